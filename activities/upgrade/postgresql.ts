/**
 * The PostgreSQL minor upgrade of one member, in steps the workflow calls one at a time, each
 * converging on what it finds (a retry after a crash at any line ends in the same state):
 *
 * - upgradeSwitchBuild: the new build unpacked beside the old (/usr/pgsql-18.6.0 next to
 *   /usr/pgsql-18.4.0), a CHECKPOINT (the restart's shutdown checkpoint is then short), and the
 *   bin dir's parent link (/usr/pgsql-18) moved to it — by rename, atomically. A deploy's real
 *   directory at the link's place is first copied into the versioned layout and swapped for a link.
 * - upgradeRestartMember: POST /restart once (the intent is carried by every heartbeat, so a retried
 *   attempt watches instead of POSTing again), then a bounded wait until the member runs the new
 *   version and streams from whoever leads now within the lag bound.
 * - upgradeRollbackMember: the link back to the old build and the same restart and wait onto it.
 * The old build always stays: it is the rollback.
 */
import type { Inventory } from '../../runbooks/schema';
import { findNode, restApi, restApiAuth, sqlConn } from '../../runbooks/topology';
import { fail, fmtLag, patroniOf, refuse, walsenderSince } from '../maintenance/common';
import { normaliseRole, PatroniUnreachableError, clusterLeader } from '../patroni';
import { clusterOf } from '../maintenance/common';
import { unpackBuild } from '../nodes/packages';
import { probe, run } from '../nodes/shell';
import type { Ct } from '../nodes/types';
import { PollTimeoutError, heartbeat, keepBeating, pollUntil, priorIntent, recordIntent } from '../poll';
import { offlineManifest } from './precheck';
import type { LinkResult, MemberUpgradeResult, UpgradeDeps } from './types';
import { findPgBuild, pgBuildHome, pgVersionText } from './versions';

async function memberCt(deps: UpgradeDeps, inv: Inventory, member: string): Promise<Ct> {
  const node = findNode(inv, 'postgres', member);
  return { sh: await deps.shellFor(inv.proxmox), vmid: node.vmid };
}

/** The build dir a link points at, or null when `link` is not a symlink. */
async function linkTarget(ct: Ct, link: string): Promise<string | null> {
  const r = await probe(ct, ['readlink', link]);
  return r.code === 0 ? r.stdout.trim() : null;
}

/** Points `link` at `target` by rename (atomic: the bin dir never goes missing). */
async function pointLink(ct: Ct, link: string, target: string): Promise<void> {
  await run(ct, ['ln', '-sfnT', target, `${link}.pgha-new`]);
  await run(ct, ['mv', '-T', `${link}.pgha-new`, link]);
  // The build's libraries are found through the link (ld.so.conf.d/pgha-postgresql.conf): refresh the cache.
  await run(ct, ['ldconfig']);
}

/**
 * A deploy that left a real directory where the link belongs: copy it into the versioned layout
 * (by the version its postgres reports), then swap the directory for a link to the copy. The
 * directory itself is kept beside, renamed (`<link>.pgha-replaced`), never deleted.
 */
async function convergeRealDir(
  deps: UpgradeDeps,
  ct: Ct,
  inv: Inventory,
  member: string,
  link: string,
): Promise<string> {
  const out = await run(ct, [`${link}/bin/postgres`, '--version']); // postgres (PostgreSQL) 18.4
  const m = /(\d+\.\d+)/.exec(out);
  const builds = (await offlineManifest(deps, inv, member)).postgresql ?? [];
  const own = m ? findPgBuild(builds, m[1]!) : undefined;
  const version = own?.version ?? (m ? `${m[1]}.0` : undefined);
  if (!version)
    fail(
      `${member}: ${link} is a directory whose postgres says ${JSON.stringify(out.trim())}; cannot name its version`,
    );
  const versioned = pgBuildHome(inv.postgresql.binDir, version).target;
  if ((await probe(ct, [`${versioned}/bin/postgres`, '--version'])).code !== 0) {
    await run(ct, ['rm', '-rf', `${versioned}.partial`]);
    await run(ct, ['cp', '-a', link, `${versioned}.partial`], 300_000);
    await run(ct, ['mv', '-T', `${versioned}.partial`, versioned]);
  }
  // Swap: the directory aside, the link in its place (two renames; the copy is already complete).
  await run(ct, ['ln', '-sfnT', versioned, `${link}.pgha-new`]);
  await run(ct, ['mv', '-T', link, `${link}.pgha-replaced`]);
  await run(ct, ['mv', '-T', `${link}.pgha-new`, link]);
  return versioned;
}

export interface SwitchBuildArgs {
  inv: Inventory;
  member: string;
  /** The build as the install source names it: 18.6.0. */
  build: string;
  /** CHECKPOINT first (default true). */
  checkpoint?: boolean;
}

export function upgradeSwitchBuild(deps: UpgradeDeps, args: SwitchBuildArgs): Promise<LinkResult> {
  return keepBeating(switchBuild(deps, args), { member: args.member, phase: `switch to ${args.build}` });
}

async function switchBuild(deps: UpgradeDeps, args: SwitchBuildArgs): Promise<LinkResult> {
  const { inv, member } = args;
  const ct = await memberCt(deps, inv, member);
  const { link, target } = pgBuildHome(inv.postgresql.binDir, args.build);
  // A crash between the two renames of a swap leaves the new link beside a missing one: finish it.
  if (
    (await probe(ct, ['test', '-e', link])).code !== 0 &&
    (await probe(ct, ['test', '-L', `${link}.pgha-new`])).code === 0
  ) {
    await run(ct, ['mv', '-T', `${link}.pgha-new`, link]);
  }
  // The new build beside the old.
  if ((await probe(ct, [`${target}/bin/postgres`, '--version'])).code !== 0) {
    const src = inv.install.postgresql;
    if (src.method !== 'offline')
      refuse(`install.postgresql.method ${src.method}: only an offline directory is supported`);
    const b = findPgBuild((await offlineManifest(deps, inv, member)).postgresql ?? [], args.build);
    if (!b) fail(`${member}: build ${args.build} vanished from ${src.dir}/MANIFEST.json`);
    heartbeat({ member, phase: `unpack ${b.version}` });
    await unpackBuild(ct, `${src.dir}/${b.wheel}`, b.archive, target);
  }
  let before = await linkTarget(ct, link);
  let converged: string | undefined;
  if (before === null) {
    if ((await probe(ct, ['test', '-d', link])).code !== 0)
      fail(`${member}: ${link} is neither a link nor a directory`);
    converged = await convergeRealDir(deps, ct, inv, member, link);
    before = converged;
  }
  if (before === target) return { member, link, before, after: target, changed: false, converged };
  if (args.checkpoint ?? true) {
    heartbeat({ member, phase: 'CHECKPOINT' });
    await deps.postgres.pgCheckpoint(sqlConn(inv, member));
  }
  await pointLink(ct, link, target);
  return { member, link, before, after: target, changed: true, converged };
}

export interface RelinkArgs {
  inv: Inventory;
  member: string;
  /** The build dir to point the link at again (a LinkResult's `before`). */
  target: string;
  /** Only while the member still runs this version (server_version_num). */
  onlyIfRunning?: number;
}

/** The link back to `target` (rollback before any restart); a no-op when it points there. */
export async function upgradeRelink(deps: UpgradeDeps, args: RelinkArgs): Promise<LinkResult> {
  const ct = await memberCt(deps, args.inv, args.member);
  if (args.onlyIfRunning !== undefined) {
    // A switchover that failed after its hand-off restarted the member on the new build: the link
    // stays where what it runs is.
    const st = await patroniOf(deps, args.inv, args.member);
    if (st?.server_version !== args.onlyIfRunning) {
      const { link } = pgBuildHome(args.inv.postgresql.binDir, '0');
      const now = (await linkTarget(ct, link)) ?? link;
      return { member: args.member, link, before: now, after: now, changed: false };
    }
  }
  const { link } = pgBuildHome(args.inv.postgresql.binDir, '0');
  if ((await probe(ct, [`${args.target}/bin/postgres`, '--version'])).code !== 0) {
    fail(`${args.member}: the old build ${args.target} is not there any more; cannot roll back`);
  }
  const before = (await linkTarget(ct, link)) ?? link;
  if (before !== args.target) await pointLink(ct, link, args.target);
  return { member: args.member, link, before, after: args.target, changed: before !== args.target };
}

export interface RestartOntoArgs {
  inv: Inventory;
  member: string;
  /** The version it must run afterwards (server_version_num). */
  wantNum: number;
  /** postmaster_start_time before (from the plan): a different one means restarted. */
  postmasterBefore: string | null;
  maxLagBytes: number;
  /** Default 300 s. */
  timeoutMs?: number;
}

/** The heartbeat-details key of a restart POSTed onto a build. */
const intentKey = (member: string, wantNum: number) => `upgrade-restart:${member}:${wantNum}`;

interface Back {
  after: string | null;
  lagBytes: number | null;
  running: number | null;
}

/**
 * One look: running `wantNum` on a new postmaster, and streaming from the leader now within the
 * bound (or the leader itself). A start that keeps failing fails the look (`started.failedSince`:
 * when Patroni first said so in this wait).
 */
async function lookBack(
  deps: UpgradeDeps,
  args: RestartOntoArgs,
  before: string | null,
  started: { failedSince?: number; silentSince?: number },
) {
  const { inv, member } = args;
  const st = await patroniOf(deps, inv, member);
  const value: Back = {
    after: st?.postmaster_start_time ?? null,
    lagBytes: null,
    running: st?.server_version ?? null,
  };
  if (!st) return { done: false, value, describe: 'REST API not answering' };
  if (before !== null && value.after === before)
    return { done: false, value, describe: `not restarted yet (state ${st.state})` };
  if (/^(re)?start failed/.test(st.state ?? '')) {
    // Patroni saw the postmaster exit while starting. Its HA loop may try again: a start that
    // still fails a whole loop_wait later is the build's, not a passing hiccup.
    started.failedSince ??= Date.now();
    const waited = Date.now() - started.failedSince;
    if (waited >= args.inv.patroni.loopWait * 1000)
      fail(
        `${member}: PostgreSQL does not start (Patroni state '${st.state}' for ${Math.round(waited / 1000)} s); ` +
          `see its server log and journalctl -u patroni`,
      );
    return { done: false, value, describe: `state ${st.state}` };
  }
  started.failedSince = undefined;
  if (st.state !== 'running') {
    // Patroni 3.3 can report 'restarting' for as long as one waits after the new postmaster exited
    // at once (a broken build): no server listens. A start that is only slow (recovery) listens and
    // answers "starting up". Nothing listening for three HA loops is the build's failure.
    const conn = sqlConn(inv, member);
    const listening = await deps.postgres.pgListening(conn).catch(() => 'unreachable');
    if (listening === 'refused') {
      started.silentSince ??= Date.now();
      const waited = Date.now() - started.silentSince;
      if (waited >= 3 * args.inv.patroni.loopWait * 1000)
        fail(
          `${member}: PostgreSQL does not start (nothing listens on ${conn.host}:${conn.port} for ` +
            `${Math.round(waited / 1000)} s while Patroni reports '${st.state}'); ` +
            `see its server log and journalctl -u patroni`,
        );
    } else started.silentSince = undefined;
    return { done: false, value, describe: `state ${st.state}, server ${listening}` };
  }
  if (st.server_version !== args.wantNum) {
    return {
      done: false,
      value,
      describe: `runs ${pgVersionText(st.server_version) ?? '?'}, want ${pgVersionText(args.wantNum)}`,
    };
  }
  let leader: string | undefined;
  try {
    leader = clusterLeader(await clusterOf(deps, inv));
  } catch (err) {
    return { done: false, value, describe: (err as Error).message };
  }
  if (!leader) return { done: false, value, describe: 'no leader now (a failover?)' };
  if (leader === member) {
    return { done: normaliseRole(st.role) === 'primary', value, describe: `leads now (role ${st.role})` };
  }
  try {
    const rows = await deps.postgres.pgReplication(sqlConn(inv, leader));
    const row = walsenderSince(rows, member, value.after);
    value.lagBytes = row?.replayLagBytes ?? null;
    const ok = row?.state === 'streaming' && value.lagBytes !== null && value.lagBytes <= args.maxLagBytes;
    return {
      done: ok,
      value,
      describe: row
        ? `${row.state} from ${leader}, lag ${fmtLag(value.lagBytes)}`
        : `no walsender on ${leader} yet`,
    };
  } catch (err) {
    return { done: false, value, describe: `leader ${leader}: ${(err as Error).message}` };
  }
}

async function waitBack(
  deps: UpgradeDeps,
  args: RestartOntoArgs,
  before: string | null,
  what: string,
): Promise<Back> {
  const started: { failedSince?: number; silentSince?: number } = {};
  try {
    return await pollUntil(
      { what: `${args.member} ${what}`, timeoutMs: args.timeoutMs ?? 300_000, intervalMs: 500 },
      () => lookBack(deps, args, before, started),
    );
  } catch (err) {
    if (err instanceof PollTimeoutError) fail(err.message);
    throw err;
  }
}

/**
 * Restarts `member` onto the build its link points at (POST /restart once) and waits until it runs
 * `wantNum` and streams. A member found already on `wantNum` with a new postmaster (an earlier
 * attempt, or a switchover's demotion) is only waited for.
 */
async function restartOnto(
  deps: UpgradeDeps,
  args: RestartOntoArgs,
): Promise<{ back: Back; posted: boolean }> {
  const { inv, member } = args;
  const key = intentKey(member, args.wantNum);
  const what = `running ${pgVersionText(args.wantNum)} and streaming`;
  const prior = priorIntent<{ postmasterBefore: string | null }>(key);
  if (prior) return { back: await waitBack(deps, args, prior.postmasterBefore, what), posted: false };
  const st = await patroniOf(deps, inv, member);
  if (!st) throw new Error(`${member}: Patroni REST API does not answer; not restarting blind`);
  const now = st.postmaster_start_time ?? null;
  if (args.postmasterBefore !== null && now !== args.postmasterBefore) {
    // Restarted since the plan was made (an earlier attempt whose worker died, a switchover's
    // demotion), or down right now (a restart under way: no start time): only wait.
    return { back: await waitBack(deps, args, args.postmasterBefore, what), posted: false };
  }
  if (st.server_version === args.wantNum && args.postmasterBefore === null) {
    return { back: await waitBack(deps, args, null, what), posted: false };
  }
  recordIntent(key, { postmasterBefore: now }, { member, phase: 'POST /restart' });
  try {
    const answer = await keepBeating(
      deps.patroni.patroniRestart({
        target: restApi(inv, member),
        auth: restApiAuth(inv),
        timeoutMs: 240_000,
      }),
      { member, phase: 'POST /restart' },
    );
    const text = answer.text ?? JSON.stringify(answer.body);
    // "postgres is still starting": Patroni's own wait ran out, not the start; the wait below decides.
    if (answer.status !== 200 && !/already in progress|still starting/.test(text)) {
      fail(
        `POST /restart on ${member} answered ${answer.status}: ${text}; see its Patroni log (journalctl -u patroni)`,
      );
    }
  } catch (err) {
    // A timeout is no answer: the restart may be under way; the wait decides.
    if (!(err instanceof PatroniUnreachableError && err.reason === 'timeout')) throw err;
  }
  return { back: await waitBack(deps, args, now, what), posted: true };
}

export interface UpgradeRestartArgs extends RestartOntoArgs {
  /** For the report: the version it ran before. */
  fromNum: number | null;
}

export async function upgradeRestartMember(
  deps: UpgradeDeps,
  args: UpgradeRestartArgs,
): Promise<MemberUpgradeResult> {
  const started = Date.now();
  const { back, posted } = await restartOnto(deps, args);
  return {
    member: args.member,
    from: pgVersionText(args.fromNum),
    to: pgVersionText(back.running),
    action: posted ? 'upgraded' : 'already-upgraded',
    postmasterBefore: args.postmasterBefore,
    postmasterAfter: back.after,
    lagBytes: back.lagBytes,
    tookMs: Date.now() - started,
  };
}

export interface RollbackArgs {
  inv: Inventory;
  member: string;
  /** The old build dir (the switch's LinkResult.before). */
  previous: string;
  /** The version it ran before (server_version_num). */
  fromNum: number;
  maxLagBytes: number;
  timeoutMs?: number;
}

/** The link back to the old build, restarted onto it, waited for until it streams again. */
export async function upgradeRollbackMember(
  deps: UpgradeDeps,
  args: RollbackArgs,
): Promise<MemberUpgradeResult> {
  const started = Date.now();
  await upgradeRelink(deps, { inv: args.inv, member: args.member, target: args.previous });
  const st = await patroniOf(deps, args.inv, args.member);
  const { back } = await restartOnto(deps, {
    inv: args.inv,
    member: args.member,
    wantNum: args.fromNum,
    postmasterBefore: st?.server_version === args.fromNum ? null : (st?.postmaster_start_time ?? null),
    maxLagBytes: args.maxLagBytes,
    timeoutMs: args.timeoutMs,
  });
  return {
    member: args.member,
    from: pgVersionText(st?.server_version ?? null),
    to: pgVersionText(back.running),
    action: 'rolled-back',
    postmasterBefore: st?.postmaster_start_time ?? null,
    postmasterAfter: back.after,
    lagBytes: back.lagBytes,
    tookMs: Date.now() - started,
  };
}
