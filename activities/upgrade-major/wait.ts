/**
 * After the point of no return: a member up on the new major as Patroni reports it (the leader
 * primary and holding the key; a replica cloned, running, and streaming in the leader's
 * replication list), and the statistics pg_upgrade does not carry made again.
 */
import type { Inventory } from '../../runbooks/schema';
import { patroniOf } from '../maintenance/common';
import { normaliseRole } from '../patroni';
import { PG_SOCKET_DIR } from '../render/patroni';
import { probe, run } from '../nodes/shell';
import { pollUntil } from '../poll';
import { PG_UPGRADE_UNIT, asPg, bin, memberCt } from './common';
import type { MajorDeps, MajorMemberResult } from './types';

export interface MajorWaitArgs {
  /** The inventory after the upgrade. */
  inv: Inventory;
  member: string;
  role: 'leader' | 'replica';
  /** For a replica: the leader whose replication list must show it streaming. */
  leader: string;
  /** Default 20 min: a replica's clone copies the whole database. */
  timeoutMs?: number;
}

export async function majorWaitMember(deps: MajorDeps, args: MajorWaitArgs): Promise<MajorMemberResult> {
  const { inv, member, role, leader } = args;
  const major = inv.postgresql.major;
  return pollUntil(
    {
      what: `${member} up on PostgreSQL ${major} as ${role}`,
      timeoutMs: args.timeoutMs ?? 20 * 60_000,
      intervalMs: 1000,
    },
    async () => {
      const st = await patroniOf(deps, inv, member);
      const v = typeof st?.server_version === 'number' ? st.server_version : null;
      const value: MajorMemberResult = { member, role, state: st?.state ?? 'unreachable', serverVersion: v };
      const onMajor = v !== null && Math.floor(v / 10000) === major;
      let done: boolean;
      if (role === 'leader') {
        done =
          onMajor &&
          st?.state === 'running' &&
          normaliseRole(st.role) === 'primary' &&
          st.cluster_unlocked !== true;
      } else {
        const row = (await patroniOf(deps, inv, leader))?.replication?.find(
          (r) => r.application_name === member,
        );
        done = onMajor && normaliseRole(st?.role) === 'replica' && row?.state === 'streaming';
      }
      return {
        done,
        value,
        describe: `${member}: ${value.state}, role ${st?.role ?? '?'}, server ${v ?? '?'}`,
      };
    },
  );
}

/**
 * ANALYZE where PostgreSQL 18's pg_upgrade did not carry statistics over (`vacuumdb
 * --analyze-in-stages --missing-stats-only`: extended statistics, and everything from an older
 * pg_upgrade), on the new leader; then the finished pg_upgrade unit is cleared.
 */
export async function majorAnalyze(
  deps: MajorDeps,
  args: { inv: Inventory; leader: string },
): Promise<{ tookMs: number }> {
  const { inv, leader } = args;
  const started = Date.now();
  const ct = await memberCt(deps, inv, leader);
  await run(
    ct,
    asPg(inv, [
      bin(inv, 'vacuumdb'),
      '--all',
      '--analyze-in-stages',
      ...(inv.postgresql.major >= 18 ? ['--missing-stats-only'] : []),
      '-h',
      PG_SOCKET_DIR,
      '-p',
      String(inv.ports.postgresql),
      '-U',
      inv.postgresql.superuser,
    ]),
    3 * 3600_000,
  );
  await probe(ct, ['systemctl', 'stop', PG_UPGRADE_UNIT], 60_000);
  return { tookMs: Date.now() - started };
}
