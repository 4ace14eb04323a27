/**
 * `pgha validate --cluster FILE [MORE...] [--json]`: check inventories without connecting anywhere.
 * Prints every problem as `field.path (line L, column C): found ...; expected ...; Fix: ...` and
 * exits 1, or prints a short summary of the cluster and exits 0 (warnings do not fail it). With
 * --json the output is always JSON — also for a missing, unreadable or unparsable file.
 */
import type { Command } from 'commander';
import { lstat } from 'node:fs/promises';
import {
  checkInventoryFile,
  formatIssues,
  secretNamesOf,
  type Inventory,
  type InventoryIssue,
} from '../../runbooks/inventory';
import { explainTiming } from '../../runbooks/timing';

function describeInstall(inv: Inventory): string {
  return (['postgresql', 'patroni', 'etcd', 'haproxy'] as const)
    .map((c) => {
      const i = inv.install[c];
      return `${c} ${i.method}${i.method === 'offline' ? ` (${i.dir})` : ''}`;
    })
    .join(', ');
}

/** The short summary printed for a valid inventory. */
export function summarize(inv: Inventory, file: string): string[] {
  const nodes = (role: 'etcd' | 'postgres' | 'haproxy') =>
    inv.nodes[role].map((n) => `${n.hostname}/CT ${n.vmid}/${n.ip}`).join(', ');
  const p = inv.ports;
  const refs = secretNamesOf(inv).map((n) => inv.secrets[n]!);
  return [
    `${file}: valid`,
    `  cluster ${inv.cluster}, subnet ${inv.subnet}, Proxmox ${inv.proxmox.user}@${inv.proxmox.host}:${inv.proxmox.port}`,
    `  etcd ${inv.versions.etcd} x${inv.nodes.etcd.length}: ${nodes('etcd')} (client ${p.etcdClient}, peer ${p.etcdPeer})`,
    `  PostgreSQL ${inv.versions.postgresql} + Patroni ${inv.versions.patroni} x${inv.nodes.postgres.length}: ${nodes('postgres')} (postgres ${p.postgresql}, REST API ${p.patroniRestApi})`,
    `  HAProxy x${inv.nodes.haproxy.length}: ${nodes('haproxy')} (write ${p.haproxyWrite}, read ${p.haproxyRead}, stats ${p.haproxyStats})`,
    `  Patroni scope ${inv.patroni.scope}, namespace ${inv.patroni.namespace}, ttl ${inv.patroni.ttl}s, loop_wait ${inv.patroni.loopWait}s, retry_timeout ${inv.patroni.retryTimeout}s, maximum_lag_on_failover ${inv.patroni.maximumLagOnFailover}`,
    ...explainTiming(inv.patroni).map((l) => `  ${l}`),
    `  PostgreSQL ${inv.postgresql.major}: data ${inv.postgresql.dataDir}, bin ${inv.postgresql.binDir}`,
    `  install: ${describeInstall(inv)}`,
    `  secrets: ${refs.filter((r) => r.startsWith('file:')).length} file: and ${refs.filter((r) => r.startsWith('env:')).length} env: references`,
  ];
}

interface FileReport {
  /** The JSON object `--json` prints for one file. */
  json: { file: string; valid: boolean; issues: (InventoryIssue & { location?: string })[] };
  /** What the text mode prints, and where. */
  text: string;
  stream: 'stdout' | 'stderr';
}

/** Check one file; never throws (a missing, unreadable or unparsable file is an issue). */
async function checkFile(file: string, cluster: string): Promise<FileReport> {
  const r = await checkInventoryFile(file);
  const errors = r.issues.filter((i) => i.severity === 'error');
  const json = {
    file: r.file,
    valid: errors.length === 0 && r.inventory !== undefined,
    issues: r.issues.map((i) => ({ ...i, location: r.where(i.path) })),
  };
  const lines = formatIssues(r);
  if (!r.inventory)
    return {
      json,
      stream: 'stderr',
      text: `${r.file}: ${errors.length} error${errors.length === 1 ? '' : 's'}\n${lines.map((l) => `  ${l}`).join('\n')}\n`,
    };
  const out = summarize(r.inventory, r.file);
  // Local facts only (no connection): which file: secrets do not exist yet on this machine.
  const missing: string[] = [];
  for (const n of secretNamesOf(r.inventory)) {
    const ref = r.inventory.secrets[n]!;
    if (ref.startsWith('file:')) await lstat(ref.slice(5)).catch(() => missing.push(`secrets.${n} (${ref})`));
  }
  if (missing.length)
    out.push(
      `  note: not on this machine yet: ${missing.join(', ')}; create them with: pgha secrets init --cluster ${cluster}`,
    );
  for (const l of lines) out.push(`  ${l}`);
  return { json, stream: 'stdout', text: `${out.join('\n')}\n` };
}

/** A problem with the command itself (no file given, an internal error), in the same shape. */
function commandReport(found: string, expected: string, fix: string): FileReport {
  const issue: InventoryIssue = { path: '(command)', found, expected, fix, severity: 'error' };
  return {
    json: { file: '', valid: false, issues: [issue] },
    stream: 'stderr',
    text: `pgha validate: ${found}; expected ${expected}. Fix: ${fix}\n`,
  };
}

export function register(program: Command): void {
  program
    .command('validate')
    .description(
      'check inventory files without connecting anywhere: every error names the field, what was found, what is expected and the fix',
    )
    .argument('[more...]', 'more inventory files to check in the same run')
    .option('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option(
      '--json',
      'print {file, valid, issues} as JSON (an array of them for several files); always JSON, also on errors',
    )
    .action(async (more: string[], opts: { cluster?: string; json?: boolean }) => {
      const files = [...(opts.cluster !== undefined ? [opts.cluster] : []), ...more];
      let reports: FileReport[];
      try {
        reports =
          files.length === 0
            ? [
                commandReport(
                  'no inventory file',
                  '--cluster FILE (and optionally more files)',
                  'run pgha validate --cluster runbooks/clusters/lab.yaml',
                ),
              ]
            : await Promise.all(files.map((f) => checkFile(f, f)));
      } catch {
        // Not the error's text: it could quote the file. The report stays JSON with --json.
        reports = [
          commandReport(
            'an internal error while checking the inventory',
            'a report',
            'run again; if it persists, report it with the inventory (secrets removed)',
          ),
        ];
      }
      process.exitCode = reports.every((r) => r.json.valid) ? 0 : 1;
      if (opts.json) {
        const body =
          reports.length === 1 && files.length <= 1 ? reports[0]!.json : reports.map((r) => r.json);
        process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
        return;
      }
      for (const r of reports) (r.stream === 'stdout' ? process.stdout : process.stderr).write(r.text);
    });
}
