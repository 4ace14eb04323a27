/**
 * Barman's command line in the backup CT, as its OS user, argv only (activities/command.ts quotes
 * it for `pct exec`). `barman check` parsed into named results.
 */
import type { Inventory } from '../../runbooks/schema';
import { backupNode } from '../../runbooks/topology';
import { cancellationSignal, heartbeating } from '../poll';
import { barmanExecutable, barmanServer } from '../render';
import type { BackupDeps } from './types';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `argv` in the backup CT as backup.osUser (heartbeating, killed on cancel); never throws on its exit. */
export async function asBackupUser(
  deps: BackupDeps,
  inv: Inventory,
  argv: string[],
  o: { timeoutMs?: number; stdin?: string } = {},
): Promise<CliResult> {
  const node = backupNode(inv);
  if (!node) throw new Error(`cluster ${inv.cluster} has no backup CT (nodes.backup)`);
  const sh = await deps.shellFor(inv.proxmox);
  const r = await heartbeating(
    () => argv.slice(0, 3).join(' '),
    () =>
      sh.exec(node.vmid, ['runuser', '-u', inv.backup.osUser, '--', ...argv], {
        timeoutMs: o.timeoutMs ?? 120_000,
        signal: cancellationSignal(),
        ...(o.stdin === undefined ? {} : { stdin: o.stdin }),
      }),
  );
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

/** `barman <args...>` in the backup CT as backup.osUser. */
export function barmanCli(
  deps: BackupDeps,
  inv: Inventory,
  args: string[],
  timeoutMs = 120_000,
): Promise<CliResult> {
  return asBackupUser(deps, inv, [barmanExecutable(inv), ...args], { timeoutMs });
}

/** `barman check` lines `\tname: OK|FAILED (detail)` as a list. */
export function parseBarmanCheck(out: string): { name: string; ok: boolean; detail: string }[] {
  const rows: { name: string; ok: boolean; detail: string }[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s+(.+?): (OK|FAILED)\b\s*(.*)$/.exec(line);
    if (m) rows.push({ name: m[1]!, ok: m[2] === 'OK', detail: m[3]!.replace(/^\((.*)\)$/, '$1') });
  }
  return rows;
}

export interface BarmanCheck {
  server: string;
  ok: boolean;
  checks: { name: string; ok: boolean; detail: string }[];
}

/** One `barman check <server>`. */
export async function barmanCheck(deps: BackupDeps, args: { inv: Inventory }): Promise<BarmanCheck> {
  const server = barmanServer(args.inv);
  const r = await barmanCli(deps, args.inv, ['check', server]);
  const checks = parseBarmanCheck(r.stdout);
  return { server, ok: r.code === 0 && checks.length > 0 && checks.every((c) => c.ok), checks };
}

/** One row of `barman -f json list-backups` (every status: EMPTY, STARTED, FAILED, DONE, ...). */
export interface BarmanListedBackup {
  backup_id: string;
  backup_name?: string;
  status: string;
  /** With a retention policy: VALID, OBSOLETE, KEEP:..., NONE (Barman's retention status). */
  retention_status?: string;
  size_bytes?: number;
  end_time?: string;
}

/** Every backup of the cluster's server as Barman lists it. */
export async function listBackups(deps: BackupDeps, inv: Inventory): Promise<BarmanListedBackup[]> {
  const server = barmanServer(inv);
  const r = await barmanCli(deps, inv, ['-f', 'json', 'list-backups', server]);
  if (r.code !== 0)
    throw new Error(
      `barman list-backups ${server} exited with ${r.code}: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`,
    );
  const doc = JSON.parse(r.stdout) as Record<string, BarmanListedBackup[]>;
  return doc[server] ?? [];
}

/** The tasks of Barman's processes running for the server (`backup`, `receive-wal`, ...). */
export async function barmanTasks(deps: BackupDeps, inv: Inventory): Promise<string[]> {
  const server = barmanServer(inv);
  const r = await barmanCli(deps, inv, ['-f', 'json', 'list-processes', server]);
  if (r.code !== 0)
    throw new Error(
      `barman list-processes ${server} exited with ${r.code}: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`,
    );
  const doc = JSON.parse(r.stdout) as Record<string, { pid: number; name: string }[]>;
  return (doc[server] ?? []).map((p) => p.name);
}

/**
 * What pgha's own checks found for a backup, kept beside Barman's data (Barman records neither
 * verify-backup nor check-backup): `<storage>/pgha-verified/<backup id>.json`, written by the
 * physical backup after both ran, read by `pgha status --backup`.
 */
export interface BackupVerification {
  backupId: string;
  /** `barman verify-backup` (pg_verifybackup) passed. */
  verified: boolean;
  /** `barman check-backup` passed: every WAL file the backup needs is archived. */
  walComplete: boolean;
  at: string;
}

const BACKUP_ID = /^\d{8}T\d{6}$/;
const verificationDir = (inv: Inventory) => `${inv.backup.storage.path}/pgha-verified`;

export async function recordVerification(
  deps: BackupDeps,
  inv: Inventory,
  v: BackupVerification,
): Promise<void> {
  if (!BACKUP_ID.test(v.backupId)) throw new Error(`not a Barman backup id: ${JSON.stringify(v.backupId)}`);
  const node = backupNode(inv);
  if (!node) throw new Error(`cluster ${inv.cluster} has no backup CT (nodes.backup)`);
  const sh = await deps.shellFor(inv.proxmox);
  const r = await sh.exec(
    node.vmid,
    [
      'runuser',
      '-u',
      inv.backup.osUser,
      '--',
      'sh',
      '-c',
      'mkdir -p "$1" && cat >"$1/$2.json.new" && mv -f "$1/$2.json.new" "$1/$2.json"',
      'sh',
      verificationDir(inv),
      v.backupId,
    ],
    { stdin: `${JSON.stringify(v)}\n`, timeoutMs: 30_000 },
  );
  if (r.code !== 0) throw new Error(`recording the verification of ${v.backupId} failed: ${r.stderr.trim()}`);
}

/** The recorded verification of a backup, or undefined when pgha recorded none. */
export async function readVerification(
  deps: BackupDeps,
  inv: Inventory,
  backupId: string,
): Promise<BackupVerification | undefined> {
  if (!BACKUP_ID.test(backupId)) return undefined;
  const node = backupNode(inv);
  if (!node) return undefined;
  const sh = await deps.shellFor(inv.proxmox);
  const r = await sh.exec(node.vmid, ['cat', `${verificationDir(inv)}/${backupId}.json`], {
    timeoutMs: 15_000,
  });
  if (r.code !== 0) return undefined;
  const v = JSON.parse(r.stdout) as BackupVerification;
  return v.backupId === backupId ? v : undefined;
}
