/**
 * The pre-checks both upgrade runbooks share (issue 9 item 2), each a function of its own so the
 * Patroni upgrade can take the ones it needs:
 *
 * - clusterHealthy: etcd quorum, one leader, every replica streaming within the lag bound, not
 *   paused (the maintenance pre-check, reused as is);
 * - oldestXactOk: no transaction on the leader older than a bound;
 * - offlineManifest / pgBuildAvailable: the target is in the install source of every member;
 * - versionsOf + upgradeProblem: no downgrade, no other major; not already at the target.
 *
 * The cluster lock (no other pgha operation) is the runbook's own: runbook() takes it before the
 * first step. Every refusal is a non-retryable MaintenanceRefused that says what was found and the fix.
 */
import type { Inventory } from '../../runbooks/schema';
import { findNode, memberNames, sqlConn } from '../../runbooks/topology';
import { maintenancePrecheck } from '../maintenance/precheck';
import { clusterOf, fail, patroniOf, refuse } from '../maintenance/common';
import { clusterLeader, normaliseRole } from '../patroni';
import type { ClusterSnapshot } from '../maintenance';
import { probe } from '../nodes/shell';
import { PollTimeoutError, keepBeating, pollUntil } from '../poll';
import type { UpgradeDeps, UpgradeMember, UpgradePrecheckResult, UpgradeView } from './types';
import {
  DEFAULT_MAX_LAG_BYTES,
  DEFAULT_MAX_XACT_AGE_MS,
  findPgBuild,
  pgVersionNum,
  pgVersionText,
  upgradeProblem,
} from './versions';
export { DEFAULT_MAX_LAG_BYTES, DEFAULT_MAX_XACT_AGE_MS };
import type { PgBuild } from './versions';

export interface UpgradePrecheckArgs {
  inv: Inventory;
  /** Target PostgreSQL version: 18.6 (or 18.6.0). */
  to: string;
  maxLagBytes?: number;
  maxXactAgeMs?: number;
}

/** etcd quorum, one leader, replicas streaming within `maxLagBytes`, not paused. */
export function clusterHealthy(
  deps: UpgradeDeps,
  inv: Inventory,
  maxLagBytes: number,
): Promise<ClusterSnapshot> {
  return maintenancePrecheck(deps, { inv, maxLagBytes });
}

/** Refuses when a transaction on the leader is older than `maxMs`; returns the oldest age (0: none). */
export async function oldestXactOk(
  deps: UpgradeDeps,
  inv: Inventory,
  leader: string,
  maxMs: number,
): Promise<number> {
  const x = await deps.postgres.pgOldestXact(sqlConn(inv, leader));
  if (x && x.ageMs > maxMs) {
    refuse(
      `a transaction on the leader ${leader} is ${(x.ageMs / 1000).toFixed(1)} s old (pid ${x.pid}, ` +
        `application ${JSON.stringify(x.applicationName)}, ${x.state}); the limit is ${(maxMs / 1000).toFixed(1)} s: ` +
        `it would hold the switchover. Nothing was touched — let it finish (or end it: select pg_terminate_backend(${x.pid})), ` +
        `or raise --max-xact-age`,
    );
  }
  return x?.ageMs ?? 0;
}

/** MANIFEST.json of the offline directory as a member's CT sees it. */
export async function offlineManifest(
  deps: UpgradeDeps,
  inv: Inventory,
  member: string,
): Promise<{ postgresql?: PgBuild[]; patroni?: { version: string }[] }> {
  const src = inv.install.postgresql;
  if (src.method !== 'offline') {
    refuse(
      `install.postgresql.method is ${src.method}: the rolling upgrade installs from an offline directory only ` +
        `(install.postgresql: { method: offline, dir: ... }); install the new build by the site's own means first`,
    );
  }
  const node = findNode(inv, 'postgres', member);
  const ct = { sh: await deps.shellFor(inv.proxmox), vmid: node.vmid };
  const r = await probe(ct, ['cat', `${src.dir}/MANIFEST.json`]);
  if (r.code !== 0) {
    refuse(
      `${member} (CT ${node.vmid}): cannot read ${src.dir}/MANIFEST.json (${r.stderr.trim()}); is the offline directory there?`,
    );
  }
  try {
    return JSON.parse(r.stdout) as { postgresql?: PgBuild[] };
  } catch {
    refuse(`${member}: ${src.dir}/MANIFEST.json is not JSON`);
  }
}

/** The build for `to` in every member's install source (refused naming what is there). */
export async function pgBuildAvailable(deps: UpgradeDeps, inv: Inventory, to: string): Promise<PgBuild> {
  let found: PgBuild | undefined;
  for (const member of memberNames(inv)) {
    const builds = (await offlineManifest(deps, inv, member)).postgresql ?? [];
    const b = findPgBuild(builds, to);
    if (!b) {
      refuse(
        `PostgreSQL ${to} is not in the install source of ${member} (it has ${builds.map((x) => x.version).join(', ') || 'none'}); ` +
          `put the build in the offline directory, or give --to one of those`,
      );
    }
    found ??= b;
  }
  return found!;
}

/** Each member's running version and role, from GET /patroni. */
export async function versionsOf(
  deps: UpgradeDeps,
  inv: Inventory,
  leader: string,
  toNum: number,
): Promise<UpgradeMember[]> {
  return Promise.all(
    memberNames(inv).map(async (name) => {
      const st = await patroniOf(deps, inv, name);
      const serverVersion = typeof st?.server_version === 'number' ? st.server_version : null;
      return {
        name,
        role: name === leader ? 'leader' : 'replica',
        state: st?.state ?? 'unreachable',
        serverVersion,
        running: pgVersionText(serverVersion),
        postmasterStartTime: st?.postmaster_start_time ?? null,
        timeline: st?.timeline ?? null,
        upgraded: serverVersion === toNum,
      } satisfies UpgradeMember;
    }),
  );
}

/** The whole pre-check of the PostgreSQL minor upgrade. */
export function upgradePostgresPrecheck(
  deps: UpgradeDeps,
  args: UpgradePrecheckArgs,
): Promise<UpgradePrecheckResult> {
  return keepBeating(precheck(deps, args), { what: 'upgrade pre-check' });
}

async function precheck(deps: UpgradeDeps, args: UpgradePrecheckArgs): Promise<UpgradePrecheckResult> {
  const { inv } = args;
  const toNum = pgVersionNum(args.to);
  if (toNum === null)
    refuse(`--to ${JSON.stringify(args.to)} is not a PostgreSQL minor version: use e.g. 18.6`);
  const snap = await clusterHealthy(deps, inv, args.maxLagBytes ?? DEFAULT_MAX_LAG_BYTES);
  const members = await versionsOf(deps, inv, snap.leader, toNum);
  for (const m of members) {
    if (m.serverVersion === null) {
      refuse(
        `${m.name}: Patroni reports no server_version (state ${m.state}); nothing was touched — see pgha status`,
      );
    }
    const problem = upgradeProblem(m.name, m.serverVersion, toNum);
    if (problem) refuse(`${problem}. Nothing was touched`);
  }
  const base = { leader: snap.leader, timeline: snap.timeline, toNum, members, etcd: snap.etcd };
  if (members.every((m) => m.upgraded)) {
    return {
      ...base,
      build: args.to,
      alreadyAtTarget: true,
      oldestXactMs: 0,
      checkedAt: new Date().toISOString(),
    };
  }
  const build = await pgBuildAvailable(deps, inv, args.to);
  const oldestXactMs = await oldestXactOk(
    deps,
    inv,
    snap.leader,
    args.maxXactAgeMs ?? DEFAULT_MAX_XACT_AGE_MS,
  );
  return {
    ...base,
    build: build.version,
    alreadyAtTarget: false,
    oldestXactMs,
    checkedAt: new Date().toISOString(),
  };
}

export interface UpgradeLookArgs {
  inv: Inventory;
  toNum: number;
  build: string;
  /** How long to wait for Patroni to name a leader (a failover under way). Default 180 s. */
  leaderTimeoutMs?: number;
}

/**
 * A fresh look between members (re-planning after a failover): waits, bounded, until Patroni names
 * a leader that runs, then each member's version and role. No health refusal here: the workflow
 * decides what a member that does not run means.
 */
export async function upgradeLook(deps: UpgradeDeps, args: UpgradeLookArgs): Promise<UpgradeView> {
  const { inv } = args;
  let leader: string;
  try {
    leader = await pollUntil(
      { what: 'a running leader', timeoutMs: args.leaderTimeoutMs ?? 180_000, intervalMs: 1000 },
      async () => {
        try {
          const c = await clusterOf(deps, inv);
          const l = clusterLeader(c);
          const m = c.members.find((x) => x.name === l);
          if (!l || m?.state !== 'running')
            return { done: false, value: '', describe: `leader ${l ?? 'none'} ${m?.state ?? ''}` };
          // A dead leader's key and member entry outlive it until their TTL: it must answer itself.
          const own = await patroniOf(deps, inv, l);
          const leads = own?.state === 'running' && normaliseRole(own.role) === 'primary';
          return {
            done: leads,
            value: l,
            describe: leads
              ? `leader ${l}`
              : `leader key ${l}, but it ${own ? `says ${own.role}/${own.state}` : 'does not answer'}`,
          };
        } catch (err) {
          return { done: false, value: '', describe: (err as Error).message };
        }
      },
    );
  } catch (err) {
    if (err instanceof PollTimeoutError) {
      fail(`no leader: ${err.message}; the cluster is not serving writes — see pgha status`);
    }
    throw err;
  }
  const members = await versionsOf(deps, inv, leader, args.toNum);
  const st = members.find((m) => m.name === leader);
  return {
    leader,
    timeline: st?.timeline ?? null,
    build: args.build,
    toNum: args.toNum,
    members,
    checkedAt: new Date().toISOString(),
  };
}
