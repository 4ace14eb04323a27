/**
 * majorPrecheck: whether the cluster can go to the next major now, read-only. etcd quorum, one
 * leader, every replica streaming within the lag bound, not paused (the maintenance pre-check, as
 * the rolling upgrade uses it); every member on the inventory's major; the target a newer major,
 * in every member's install source. A cluster already on the target major is a no-op that says so
 * (a run started again after it finished).
 */
import { findMajorBuild, pgVersionNum, pgVersionText } from '../../runbooks/pg-version';
import type { Inventory } from '../../runbooks/schema';
import { memberNames } from '../../runbooks/topology';
import { clusterOf, patroniOf } from '../maintenance/common';
import { clusterLeader } from '../patroni';
import { clusterHealthy, offlineManifest } from '../upgrade/precheck';
import { refuse } from './common';
import type { MajorDeps, MajorPlan } from './types';

export interface MajorPrecheckArgs {
  inv: Inventory;
  /** 18 (the newest 18.x of the install source) or 18.6. */
  to: string;
  maxLagBytes: number;
}

const majorOf = (num: number) => Math.floor(num / 10000);

export async function majorPrecheck(deps: MajorDeps, args: MajorPrecheckArgs): Promise<MajorPlan> {
  const { inv, to } = args;
  const toMajor = Number(to.split('.')[0]);
  const names = memberNames(inv);
  const versions = await Promise.all(
    names.map(async (m) => {
      const st = await patroniOf(deps, inv, m);
      return typeof st?.server_version === 'number' ? st.server_version : null;
    }),
  );
  const leader = clusterLeader(await clusterOf(deps, inv));
  if (!leader) refuse(`cluster ${inv.cluster} has no leader: nothing was touched; look at pgha status first`);
  const replicas = names.filter((m) => m !== leader);
  const base = { leader, replicas, checkedAt: new Date().toISOString() };
  if (versions.every((v) => v !== null && majorOf(v) === toMajor)) {
    return {
      ...base,
      fromNum: versions[0]!,
      build: pgVersionText(versions[0]!)!,
      toNum: versions[0]!,
      alreadyDone: true,
      lagBytes: {},
    };
  }
  const snap = await clusterHealthy(deps, inv, args.maxLagBytes);
  const from = inv.postgresql.major;
  names.forEach((m, i) => {
    const v = versions[i] ?? null;
    if (v === null || majorOf(v) !== from)
      refuse(
        `${m} runs PostgreSQL ${pgVersionText(v) ?? 'an unknown version'}, the inventory says ${inv.versions.postgresql} (major ${from}): ` +
          `every member must run the inventory's major before a major upgrade; nothing was touched`,
      );
  });
  if (!(toMajor > from))
    refuse(
      `--to ${to}: the cluster runs PostgreSQL ${from}; a major upgrade goes to a newer major (e.g. --to ${from + 1})`,
    );
  let build: string | undefined;
  for (const m of names) {
    const builds = (await offlineManifest(deps, inv, m)).postgresql ?? [];
    const b = findMajorBuild(builds, to);
    if (!b)
      refuse(
        `PostgreSQL ${to} is not in the install source of ${m} (it has ${builds.map((x) => x.version).join(', ') || 'none'}); ` +
          `put the build in the offline directory, or give --to one of those`,
      );
    build ??= b.version;
  }
  const lagBytes = Object.fromEntries(
    snap.members.filter((m) => m.role === 'replica').map((m) => [m.name, m.lagBytes]),
  );
  return {
    ...base,
    fromNum: versions[0]!,
    build: build!,
    toNum: pgVersionNum(build!)!,
    alreadyDone: false,
    lagBytes,
  };
}
