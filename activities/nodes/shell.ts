/**
 * The primitives every node step is made of: argv in, checked results out. Each passes the
 * activity's cancellation signal to `pct exec` (a cancelled step kills its command in the CT) and
 * heartbeats while a command runs.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import type { RenderedFile } from '../render';
import { cancellationSignal, heartbeat, keepBeating } from '../poll';
import { NodeCommandError } from './types';
import type { Ct } from './types';

/** Runs argv in the CT; a non-zero exit is a NodeCommandError. Returns stdout. */
export async function run(ct: Ct, argv: string[], timeoutMs = 120_000): Promise<string> {
  heartbeat({ vmid: ct.vmid, command: argv[0] });
  const r = await keepBeating(ct.sh.exec(ct.vmid, argv, { timeoutMs, signal: cancellationSignal() }), {
    vmid: ct.vmid,
    command: argv[0],
  });
  if (r.code !== 0) throw new NodeCommandError(ct.vmid, argv, r.code, r.stderr);
  return r.stdout;
}

/** Runs argv in the CT and returns the whole result, whatever the exit code. */
export function probe(ct: Ct, argv: string[], timeoutMs = 30_000) {
  return ct.sh.exec(ct.vmid, argv, { timeoutMs, signal: cancellationSignal() });
}

/** Whether argv exits 0 in the CT. */
export async function succeeds(ct: Ct, argv: string[]): Promise<boolean> {
  return (await probe(ct, argv, 60_000)).code === 0;
}

/** Writes a file (atomically, only when it differs); returns whether it changed. */
export async function push(
  ct: Ct,
  path: string,
  content: string,
  opts: { mode: number; owner?: string; group?: string },
): Promise<boolean> {
  const r = await ct.sh.push(ct.vmid, path, content, { ...opts, signal: cancellationSignal() });
  return r.changed;
}

export async function ensureDir(ct: Ct, path: string, owner: string, mode: number): Promise<boolean> {
  const r = await probe(ct, ['stat', '-c', '%a %U', path]);
  if (r.code === 0 && r.stdout.trim() === `${mode.toString(8)} ${owner}`) return false;
  await run(ct, ['install', '-d', '-m', mode.toString(8), '-o', owner, '-g', owner, path]);
  return true;
}

/**
 * The rendered files in place; returns the paths that changed. A file with a `check` (argv to
 * validate a candidate at the given path, e.g. `haproxy -c -f`) goes through checkedPush.
 */
export async function ensureFiles(
  ct: Ct,
  files: RenderedFile[],
  checks: Record<string, (path: string) => string[]> = {},
): Promise<string[]> {
  const changed: string[] = [];
  for (const f of files) {
    await run(ct, ['mkdir', '-p', posix.dirname(f.path)]);
    const check = checks[f.path];
    const did = check ? await checkedPush(ct, f, check) : await push(ct, f.path, f.content, f);
    if (did) changed.push(f.path);
  }
  return changed;
}

/** Exits 0 when file $1 has sha256 $2 and "mode owner group" $3 (by name or number). */
const SAME_FILE = `[ -f "$1" ] && [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$2" ] &&
case "|$(stat -c '%a %U %G|%a %u %g' -- "$1")|" in *"|$3|"*) exit 0 ;; esac
exit 1`;

/**
 * A file replaced only by a candidate that passed its validator: the candidate is written next
 * to the live file (same directory: the rename is atomic), checked, and renamed over it. A
 * rejected candidate is removed and the live file is left as it was; the error quotes the check.
 */
export async function checkedPush(
  ct: Ct,
  f: RenderedFile,
  check: (path: string) => string[],
): Promise<boolean> {
  const sha = createHash('sha256').update(f.content).digest('hex');
  const want = `${f.mode.toString(8)} ${f.owner} ${f.group}`;
  if (await succeeds(ct, ['sh', '-c', SAME_FILE, 'pgha-same', f.path, sha, want])) return false;
  const candidate = posix.join(posix.dirname(f.path), `.${posix.basename(f.path)}.pgha-candidate`);
  await push(ct, candidate, f.content, f);
  const argv = check(candidate);
  const r = await probe(ct, argv, 60_000);
  if (r.code !== 0) {
    await run(ct, ['rm', '-f', '--', candidate]);
    const why = `${r.stderr}\n${r.stdout}`.trim();
    throw new NodeCommandError(
      ct.vmid,
      argv,
      r.code,
      `${why}\nthe new ${f.path} was rejected by this check: the live file was left unchanged`,
    );
  }
  await run(ct, ['mv', '-f', '-T', '--', candidate, f.path]);
  return true;
}

export async function unitState(ct: Ct, unit: string) {
  const out = await run(ct, [
    'systemctl',
    'show',
    unit,
    '--property=ActiveState,UnitFileState,ExecMainStartTimestampMonotonic',
  ]);
  const p = Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  return {
    active: p.ActiveState === 'active' || p.ActiveState === 'activating' || p.ActiveState === 'reloading',
    enabled: p.UnitFileState === 'enabled',
    startedAt: Number(p.ExecMainStartTimestampMonotonic ?? 0),
  };
}
