/**
 * One member's Patroni to another version without stopping PostgreSQL:
 *
 *   patroniStageVersion   the version's venv installed beside the running one (nothing restarts)
 *   patroniSwitchMember   look: already running `to`? → done. Else: the member reports the pause;
 *                         the layout (venv path → link), the unit (KillMode=process), the new
 *                         version's own check of patroni.yml; the link switched; `systemctl restart
 *                         patroni` ONCE (the main PID it replaces is an intent in the heartbeat: a
 *                         retry after a crash that finds another PID only waits); wait until
 *                         /patroni reports `to`, running, as the role it had (leader: primary;
 *                         replica: streaming from the leader). The same function rolls a member
 *                         back (to = the version it ran before: that venv is still there).
 */
import type { Inventory } from '../../runbooks/schema';
import { isMember } from '../../runbooks/topology';
import { normaliseRole } from '../patroni';
import { PollTimeoutError, heartbeat, pollUntil, priorIntent, recordIntent } from '../poll';
import { patroniOf } from '../maintenance/common';
import { fail, refuse } from './common';
import {
  convergeLayout,
  convergeUnit,
  ensureVersionVenv,
  mainPid,
  memberCt,
  pointLink,
  validateConfigWith,
} from './node';
import { holdChecks, releaseChecks } from './haproxy';
import type { PatroniUpgradeDeps, SwitchResult } from './types';

export interface StageArgs {
  inv: Inventory;
  member: string;
  version: string;
}

/** Installs `version` into its own venv on `member` (idempotent); returns what it changed. */
export async function patroniStageVersion(deps: PatroniUpgradeDeps, args: StageArgs): Promise<string[]> {
  if (!isMember(args.inv, args.member))
    refuse(`${args.member} is not a PostgreSQL member of ${args.inv.cluster}`);
  const ct = await memberCt(deps, args.inv, args.member);
  return ensureVersionVenv(ct, args.inv, args.version);
}

export interface SwitchArgs {
  inv: Inventory;
  member: string;
  /** The version the member runs after this step. */
  to: string;
  /** The role it must come back in. */
  role: 'leader' | 'replica';
  /** The leader whose replication[] must list a replica as streaming. */
  leader: string;
  /** postmaster_start_time the pre-check saw (reported: a change means PostgreSQL restarted). */
  postmasterBefore: string | null;
  /** How long the new Patroni may take to report (default 180 s). */
  timeoutMs?: number;
  /** A replica's wait gives up when the leader's REST API has been silent this long (default 20 s). */
  leaderSilentMs?: number;
}

/** What a switch attempt records before it restarts the service: the main PID it replaces. */
interface RestartIntent {
  pid: number;
  at: string;
}

export const switchIntentKey = (member: string) => `patroni-switch:${member}`;

export async function patroniSwitchMember(deps: PatroniUpgradeDeps, args: SwitchArgs): Promise<SwitchResult> {
  const { inv, member, to } = args;
  const started = Date.now();
  if (!isMember(inv, member)) refuse(`${member} is not a PostgreSQL member of ${inv.cluster}`);
  const before = await patroniOf(deps, inv, member);
  const from = before?.patroni?.version ?? null;
  const result = (action: SwitchResult['action'], changes: string[], after: string | null): SwitchResult => ({
    member,
    from,
    to,
    action,
    postmasterBefore: args.postmasterBefore,
    postmasterAfter: after,
    postgresRestarted: args.postmasterBefore !== null && after !== null && after !== args.postmasterBefore,
    changes,
    tookMs: Date.now() - started,
  });
  const ct = await memberCt(deps, inv, member);
  const prior = priorIntent<RestartIntent>(switchIntentKey(member));

  if (from === to && before?.state === 'running' && !prior) {
    // Also after a crash whose intent never reached a heartbeat: the checks it held are given back.
    await releaseChecks(deps, inv, member);
    return result('already', [], before.postmaster_start_time ?? null);
  }

  const changes: string[] = [];
  // An earlier attempt restarted the service (another main PID now), or the member already runs
  // `to` and is only not `running` yet: only wait. Otherwise act, once.
  const restartedEarlier = prior !== undefined && (await mainPid(ct)) !== prior.pid;
  if (!restartedEarlier && from !== to) {
    // Pre-checks before the one restart: Patroni must know the cluster is paused, or stopping it
    // stops PostgreSQL; the unit must leave PostgreSQL alone; the new version must accept the config.
    if (before && before.pause !== true)
      refuse(
        `${member} does not report the pause (GET /patroni pause=${String(before.pause)}): restarting its Patroni ` +
          `now could stop PostgreSQL. Nothing was switched; the run resumes the cluster`,
      );
    changes.push(...(await convergeLayout(ct, inv, from)));
    changes.push(...(await ensureVersionVenv(ct, inv, to)));
    changes.push(...(await convergeUnit(ct, inv)));
    await validateConfigWith(ct, inv, to);
    changes.push(...(await pointLink(ct, inv, to)));
    const pid = await mainPid(ct);
    recordIntent(switchIntentKey(member), { pid, at: new Date().toISOString() } satisfies RestartIntent, {
      member,
      step: 'systemctl restart patroni',
    });
    // HAProxy must not take the member's PostgreSQL out for the seconds its REST API is away.
    const held = await holdChecks(deps, inv, member);
    if (held.length) changes.push(`HAProxy checks held: ${held.join(', ')}`);
    heartbeat({ member, step: 'systemctl restart patroni' });
    const r = await ct.sh.exec(ct.vmid, ['systemctl', 'restart', 'patroni'], { timeoutMs: 150_000 });
    if (r.code !== 0) {
      await releaseChecks(deps, inv, member);
      fail(`systemctl restart patroni on ${member} exited ${r.code}: ${r.stderr.trim().slice(0, 500)}`);
    }
    changes.push(`patroni restarted (main PID was ${pid})`);
  }

  const want = args.role === 'leader' ? 'the running primary' : `streaming from ${args.leader}`;
  // A replica waits on the leader's walsender: a leader silent this long is gone (its CT, its
  // Patroni) — no use waiting out the whole bound; the workflow then looks at the leader.
  const leaderSilentMs = args.leaderSilentMs ?? 20_000;
  let silentSince: number | undefined;
  try {
    const after = await pollUntil(
      { what: `${member} on Patroni ${to}, ${want}`, timeoutMs: args.timeoutMs ?? 180_000, intervalMs: 1000 },
      async () => {
        const st = await patroniOf(deps, inv, member);
        const v = st?.patroni?.version;
        const seen = st
          ? `Patroni ${v ?? '?'}, ${normaliseRole(st.role) ?? '?'}/${st.state ?? '?'}`
          : 'no answer';
        if (!st || v !== to || st.state !== 'running') return { done: false, value: null, describe: seen };
        if (args.role === 'leader') {
          const ok = normaliseRole(st.role) === 'primary';
          return { done: ok, value: st.postmaster_start_time ?? null, describe: seen };
        }
        const lead = await patroniOf(deps, inv, args.leader);
        if (!lead) {
          silentSince ??= Date.now();
          if (Date.now() - silentSince >= leaderSilentMs)
            fail(
              `${member} runs Patroni ${to}, but the leader ${args.leader} has not answered GET /patroni for ` +
                `${Math.round(leaderSilentMs / 1000)} s: is it down?`,
            );
        } else silentSince = undefined;
        const row = lead?.replication?.find((x) => x.application_name === member);
        const ok = normaliseRole(st.role) === 'replica' && row?.state === 'streaming';
        return {
          done: ok,
          value: st.postmaster_start_time ?? null,
          describe: `${seen}, walsender on ${args.leader}: ${row?.state ?? 'none'}`,
        };
      },
    );
    return result('switched', changes, after);
  } catch (err) {
    if (err instanceof PollTimeoutError) fail(`${member} did not come back on Patroni ${to}: ${err.message}`);
    throw err;
  } finally {
    // Given back whatever happened: from here HAProxy's own checks decide again.
    await releaseChecks(deps, inv, member);
  }
}
