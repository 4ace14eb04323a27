/** Helpers every maintenance activity shares: refusals, formatting, and asking the members. */
import { ApplicationFailure } from '@temporalio/common';
import { Failures } from '../../runbooks/failures';
import type { Inventory } from '../../runbooks/schema';
import { isMember, memberNames, restApi, sqlConn } from '../../runbooks/topology';
import { PatroniUnreachableError } from '../patroni';
import type { PatroniClusterJson, PatroniNodeStatus } from '../patroni';
import type { PgReplicationRow } from '../postgres';
import type { MaintenanceDeps } from './types';

/** Patroni's postmaster_start_time ("2026-11-26 09:40:13.179725+00:00") in whole ms, or null. */
export function pgTime(t: string | null | undefined): number | null {
  if (!t) return null;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

/**
 * The leader's walsender for `member` that started after `after` (the member's new postmaster start
 * time): a row left from before its restart says nothing about the restarted member.
 */
export function walsenderSince(
  rows: PgReplicationRow[],
  member: string,
  after: string | null | undefined,
): PgReplicationRow | undefined {
  const since = pgTime(after);
  return rows.find(
    (r) =>
      r.applicationName === member &&
      (since === null || !r.backendStart || Date.parse(r.backendStart) >= since),
  );
}

/** A pre-check said no: nothing was changed (non-retryable MaintenanceRefused). */
export function refuse(message: string): never {
  throw ApplicationFailure.create({ type: Failures.MaintenanceRefused, nonRetryable: true, message });
}

/** The operation was attempted and did not end as asked (non-retryable MaintenanceFailed). */
export function fail(message: string): never {
  throw ApplicationFailure.create({ type: Failures.MaintenanceFailed, nonRetryable: true, message });
}

export const fmtLag = (n: number | null | undefined) =>
  n === null || n === undefined
    ? 'unknown'
    : n < 1024 * 1024
      ? `${n} B`
      : `${(n / 1024 / 1024).toFixed(1)} MiB`;

/** Refuses a name that is not one of the inventory's PostgreSQL members. */
export function knownMember(inv: Inventory, member: string): void {
  if (!isMember(inv, member)) {
    refuse(
      `${member} is not a PostgreSQL member of cluster ${inv.cluster} ` +
        `(its members: ${memberNames(inv).join(', ')}); name one of those`,
    );
  }
}

/** GET /patroni of a member, or null when its REST API does not answer. */
export async function patroniOf(
  deps: Pick<MaintenanceDeps, 'patroni'>,
  inv: Inventory,
  member: string,
): Promise<PatroniNodeStatus | null> {
  try {
    return (await deps.patroni.patroniGetPatroni({ target: restApi(inv, member) })).body;
  } catch (err) {
    if (err instanceof PatroniUnreachableError) return null;
    throw err;
  }
}

/** GET /cluster from the first member that answers. */
export async function clusterOf(
  deps: Pick<MaintenanceDeps, 'patroni'>,
  inv: Inventory,
): Promise<PatroniClusterJson> {
  const errors: string[] = [];
  for (const member of memberNames(inv)) {
    try {
      const r = await deps.patroni.patroniGetCluster({ target: restApi(inv, member) });
      if (r.status === 200 && r.body) return r.body;
      errors.push(`${member}: HTTP ${r.status}`);
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  throw new Error(`no member answered GET /cluster: ${errors.join('; ')}`);
}

/** pg_stat_replication on the leader, or null if SQL fails (the caller falls back to /cluster). */
export async function replicationOf(
  deps: Pick<MaintenanceDeps, 'postgres'>,
  inv: Inventory,
  leader: string,
): Promise<PgReplicationRow[] | null> {
  try {
    return await deps.postgres.pgReplication(sqlConn(inv, leader));
  } catch {
    return null;
  }
}
