/**
 * Edits of the operator's inventory file that a runbook's success calls for (`pgha etcd replace
 * --vmid/--ip`), made on the YAML document itself so its comments, order and flow style stay: only
 * the values changed are rewritten. The result is checked like any inventory before it is written,
 * and written atomically (a temporary file beside it, then a rename) with the file's own mode.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, stat, writeFile, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { isMap, isScalar, isSeq, parseDocument } from 'yaml';
import { checkInventoryText, formatIssues } from '../runbooks/inventory';

/**
 * The text with etcd member `member` at `to.vmid` / `to.ip` (each only when given): each value is
 * replaced where it stands in the source (the parsed node's range), so everything else — comments,
 * quoting, flow style — is kept byte for byte (re-serialising the document would move comments).
 */
export function setEtcdMemberAt(text: string, member: string, to: { vmid?: number; ip?: string }): string {
  const doc = parseDocument(text);
  const etcd = doc.getIn(['nodes', 'etcd'], true);
  if (!isSeq(etcd)) throw new Error('nodes.etcd: not a list in the inventory file');
  const item = etcd.items.find((n) => isMap(n) && n.get('hostname') === member);
  if (!isMap(item)) throw new Error(`nodes.etcd: no member ${member} in the inventory file`);
  const edits: { from: number; to: number; value: string }[] = [];
  for (const [key, value] of [
    ['vmid', to.vmid === undefined ? undefined : String(to.vmid)],
    ['ip', to.ip],
  ] as const) {
    if (value === undefined) continue;
    if (!/^[0-9A-Za-z.:]+$/.test(value))
      throw new Error(`${key} ${JSON.stringify(value)}: not a plain value`);
    const node = item.get(key, true);
    if (!isScalar(node) || !node.range)
      throw new Error(`nodes.etcd (${member}).${key}: not a plain value in the inventory file`);
    edits.push({ from: node.range[0], to: node.range[1], value });
  }
  let out = text;
  for (const e of edits.sort((a, b) => b.from - a.from))
    out = out.slice(0, e.from) + e.value + out.slice(e.to);
  return out;
}

/** The edited text if it is a valid inventory; otherwise an error listing every problem. */
export function checkedEdit(file: string, text: string, edit: (text: string) => string): string {
  const out = edit(text);
  const r = checkInventoryText(out, file);
  const errors = r.issues.filter((i) => i.severity !== 'warning');
  if (errors.length > 0) throw new Error(formatIssues({ ...r, issues: errors }).join('\n'));
  return out;
}

/** Reads the file, applies the checked edit, writes it back atomically; false when nothing changed. */
export async function editInventoryFile(file: string, edit: (text: string) => string): Promise<boolean> {
  const abs = resolve(file);
  const text = await readFile(abs, 'utf8');
  const out = checkedEdit(abs, text, edit);
  if (out === text) return false;
  const { mode } = await stat(abs);
  const tmp = `${abs}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, out, { mode: mode & 0o7777, flag: 'wx' });
    await rename(tmp, abs);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  return true;
}
