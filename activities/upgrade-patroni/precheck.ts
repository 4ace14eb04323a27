/**
 * patroniUpgradePrecheck: the cluster is healthy enough (etcd quorum, one leader, every replica
 * streaming within the lag bound, not paused — the maintenance pre-check), every member runs a
 * Patroni version pgha can read, none runs a newer one than the target (no downgrade), and the
 * target's wheels are in every member's install source. Returns the plan: replicas first, the
 * leader last; members already at the target are skipped; all there → a no-op that says so.
 */
import type { Inventory } from '../../runbooks/schema';
import { compareVersions, isPatroniVersion, versionedVenv } from '../../runbooks/patroni-versions';
import { memberNames } from '../../runbooks/topology';
import { maintenancePrecheck } from '../maintenance/precheck';
import { patroniOf } from '../maintenance/common';
import { keepBeating } from '../poll';
import { refuse } from './common';
import { installOf, killModeOf, memberCt, wheelVersions } from './node';
import type { PatroniUpgradeDeps, UpgradeMember, UpgradePlan } from './types';

export interface UpgradePrecheckArgs {
  inv: Inventory;
  to: string;
  /** Replay lag bound for replicas (default patroni.maximumLagOnFailover). */
  maxLagBytes?: number;
}

/** What the run does on each node, in order (the dry run prints it). */
export function planSteps(inv: Inventory, to: string, members: UpgradeMember[]): string[] {
  const { venv } = installOf(inv);
  const todo = members.filter((m) => m.action === 'upgrade');
  if (todo.length === 0) return [`nothing to do: every member already runs Patroni ${to}`];
  const steps = [
    `install Patroni ${to} into ${versionedVenv(venv, to)} on ${todo.map((m) => m.name).join(', ')} (beside the running one; nothing restarts)`,
    'pause the cluster (PATCH /config {"pause": true}) and wait until every member reports it',
  ];
  for (const m of todo) {
    steps.push(
      `${m.name} (${m.role}, Patroni ${m.version}): ${venv} -> ${versionedVenv(venv, to)}, ` +
        `unit KillMode=process${m.killMode === 'process' ? '' : ` (now ${m.killMode}: rewritten + daemon-reload)`}, ` +
        `systemctl restart patroni (PostgreSQL keeps running), wait until /patroni reports ${to} and it is ` +
        (m.role === 'leader' ? 'the running primary' : 'streaming again'),
    );
  }
  steps.push(
    'resume (PATCH /config {"pause": false}); verify every member runs the target, PostgreSQL not restarted',
  );
  return steps;
}

export function patroniUpgradePrecheck(
  deps: PatroniUpgradeDeps,
  args: UpgradePrecheckArgs,
): Promise<UpgradePlan> {
  return keepBeating(precheck(deps, args), { what: 'patroni upgrade pre-check' });
}

async function precheck(deps: PatroniUpgradeDeps, args: UpgradePrecheckArgs): Promise<UpgradePlan> {
  const { inv, to } = args;
  if (!isPatroniVersion(to))
    refuse(`to ${JSON.stringify(to)} is not a Patroni version: use major.minor.patch, e.g. 4.1.5`);
  const { dir } = installOf(inv);
  const snap = await maintenancePrecheck(deps, { inv, maxLagBytes: args.maxLagBytes });

  const names = memberNames(inv);
  const statuses = await Promise.all(names.map((m) => patroniOf(deps, inv, m)));
  const problems: string[] = [];
  const members: UpgradeMember[] = [];
  for (const [i, name] of names.entries()) {
    const st = statuses[i];
    const version = st?.patroni?.version;
    const s = snap.members.find((x) => x.name === name);
    if (!st || !s || !isPatroniVersion(version)) {
      problems.push(`${name}: its GET /patroni reports no Patroni version (${version ?? 'no answer'})`);
      continue;
    }
    if (compareVersions(version, to) > 0) {
      problems.push(`${name} runs Patroni ${version}, newer than ${to}: pgha does not downgrade Patroni`);
      continue;
    }
    const ct = await memberCt(deps, inv, name);
    const have = await wheelVersions(ct, dir);
    if (version !== to && !have.includes(to)) {
      problems.push(
        `${name}: no wheels for Patroni ${to} in ${dir} (it has ${have.join(', ') || 'none'}); ` +
          `put them there (${dir}/MANIFEST.json) or choose one of those`,
      );
      continue;
    }
    members.push({
      name,
      role: s.role,
      version,
      postmasterStartTime: s.postmasterStartTime,
      killMode: await killModeOf(ct),
      action: version === to ? 'already' : 'upgrade',
    });
  }
  if (problems.length)
    refuse(
      `cannot upgrade Patroni of cluster ${inv.cluster} to ${to}: ${problems.join('; ')}. Nothing was changed`,
    );

  // Replicas first (in inventory order), the leader last.
  members.sort((a, b) => (a.role === b.role ? 0 : a.role === 'leader' ? 1 : -1));
  const noop = members.every((m) => m.action === 'already');
  return {
    cluster: inv.cluster,
    to,
    leader: snap.leader,
    timeline: snap.timeline,
    members,
    noop,
    steps: planSteps(inv, to, members),
    checkedAt: new Date().toISOString(),
  };
}
