/**
 * What every major-upgrade step shares: a member's CT, commands as the PostgreSQL OS user, the old
 * and new directories, pg_controldata read as fields, and the refusal / failure types.
 */
import { posix } from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { Failures } from '../../runbooks/failures';
import type { Inventory } from '../../runbooks/schema';
import { findNode } from '../../runbooks/topology';
import { PG_SOCKET_DIR } from '../render/patroni';
import { probe, run } from '../nodes/shell';
import type { Ct } from '../nodes/types';
import type { MajorDeps } from './types';

/** A pre-check said no: nothing was changed (non-retryable MajorUpgradeRefused). */
export function refuse(message: string): never {
  throw ApplicationFailure.create({ type: Failures.MajorUpgradeRefused, nonRetryable: true, message });
}

/** The step was attempted and did not end as asked (non-retryable MajorUpgradeFailed). */
export function fail(message: string): never {
  throw ApplicationFailure.create({ type: Failures.MajorUpgradeFailed, nonRetryable: true, message });
}

export async function memberCt(deps: MajorDeps, inv: Inventory, member: string): Promise<Ct> {
  const node = findNode(inv, 'postgres', member);
  return { sh: await deps.shellFor(inv.proxmox), vmid: node.vmid };
}

/** argv run as the PostgreSQL OS user, in its home (pg_upgrade writes its scripts to the cwd). */
export function asPg(inv: Inventory, argv: string[]): string[] {
  return ['runuser', '-u', inv.postgresql.osUser, '--', 'env', '-C', inv.postgresql.home, ...argv];
}

export const bin = (inv: Inventory, tool: string) => posix.join(inv.postgresql.binDir, tool);

/** pg_upgrade --link from the old cluster (`inv`) to the new one (`next`), `extra` first (--check). */
export const pgUpgradeArgv = (inv: Inventory, next: Inventory, extra: string[] = []): string[] => [
  bin(next, 'pg_upgrade'),
  ...extra,
  '--link',
  '-b',
  inv.postgresql.binDir,
  '-B',
  next.postgresql.binDir,
  '-d',
  inv.postgresql.dataDir,
  '-D',
  next.postgresql.dataDir,
  '-U',
  inv.postgresql.superuser,
];

/** psql on the member's own socket as the superuser (peer): one query, rows of `|`-separated fields. */
export async function psql(ct: Ct, inv: Inventory, sql: string, db = 'postgres'): Promise<string[][]> {
  const out = await run(
    ct,
    asPg(inv, [
      bin(inv, 'psql'),
      '-XAtq',
      '-h',
      PG_SOCKET_DIR,
      '-p',
      String(inv.ports.postgresql),
      '-d',
      db,
      '-c',
      sql,
    ]),
    60_000,
  );
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('|'));
}

/** pg_controldata of a data directory as fields ("Latest checkpoint location" → "0/3000028"); null when it has none. */
export async function controlData(
  ct: Ct,
  inv: Inventory,
  dataDir: string,
): Promise<Record<string, string> | null> {
  const r = await probe(ct, asPg(inv, [bin(inv, 'pg_controldata'), '-D', dataDir]), 60_000);
  if (r.code !== 0) return null;
  const fields: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) fields[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return fields;
}

/** Whether a path exists in the CT. */
export async function exists(ct: Ct, path: string): Promise<boolean> {
  return (await probe(ct, ['test', '-e', path])).code === 0;
}

/** `pg_ctl status`: whether a postmaster runs on that data directory. */
export async function pgRunning(ct: Ct, inv: Inventory, dataDir: string): Promise<boolean> {
  const r = await probe(ct, asPg(inv, [bin(inv, 'pg_ctl'), 'status', '-D', dataDir]));
  return r.code === 0;
}

/** The transient unit pg_upgrade runs in (it outlives a dead worker; a retry finds it). */
export const PG_UPGRADE_UNIT = 'pgha-pg-upgrade';

/** An LSN as a number (0/3000028 → 0x3000028), to compare. */
export function lsnNum(lsn: string): bigint {
  const m = /^([0-9A-F]+)\/([0-9A-F]+)$/i.exec(lsn.trim());
  if (!m) throw new Error(`not an LSN: ${lsn}`);
  return (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}
