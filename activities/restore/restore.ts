/**
 * The restore runbook's steps (workflows/restore.ts): a physical backup of one cluster (the source,
 * whose backup CT holds it) restored into the PostgreSQL members of a target cluster — the same
 * cluster (in place) or another inventory's CTs (a new cluster) — through Patroni's custom
 * bootstrap.
 *
 * How the data reaches the target (runbooks/README.md, "restore", says why): a pipe on the Proxmox
 * host, `pct exec <backup CT> -- tar -c ... | pct exec <member> -- tar -x ...`: the base backup and
 * the WAL it needs go from Barman's storage into a staging directory beside the member's data
 * directory, never through the worker; then the custom bootstrap renames the staged copy into place
 * and PostgreSQL recovers from the staged WAL to the target. No SSH between CTs, no rsync in the
 * PostgreSQL CTs, no mount to add (and no CT restart), and Barman's storage is only ever read.
 *
 * Each function converges on what the CTs show, so a retry after a worker crash at any line ends the
 * same way: the old data directory is renamed once (`<data>.pgha-old-<tag>`; found there, it is not
 * renamed again and never removed except by restoreRemoveOld); the staged copy is marked complete by
 * a file written after it (a half copy is made again in a directory of its own attempt); the
 * bootstrap happens only while the data directory is absent and the staged copy is there — once
 * PostgreSQL runs from the restored data, a retry finds it and restores nothing again.
 */
import { ApplicationFailure, activityInfo } from '@temporalio/activity';
import { Failures } from '../../runbooks/failures';
import { resolveClusterSecrets } from '../../runbooks/inventory';
import { describeTarget, lsnValue, type RestoreTarget } from '../../runbooks/restore-target';
import { BACKUP_ID } from '../../runbooks/retention';
import type { Inventory } from '../../runbooks/schema';
import { backupNode, findNode, restApi, restApiAuth } from '../../runbooks/topology';
import type { PatroniActivities } from '../patroni';
import { pctExec, quote } from '../command';
import type { ProxmoxHost } from '../proxmox';
import { asBackupUser, barmanCli, listBackups } from '../backup/cli';
import { leaderOf, psqlOnMember, switchWalArchived } from '../backup/barman';
import { literal, MARKER_TABLE } from '../backup/counts';
import type { BackupDeps } from '../backup/types';
import { BARMAN_RECEIVE_WAL } from '../nodes/backup';
import { ensureFiles } from '../nodes/shell';
import { cancellationSignal, heartbeating } from '../poll';
import { barmanServer, renderPatroniYml, restoreStaging } from '../render';
import { drillChooseBackup, type DrillBackup } from './drill';

export interface RestoreDeps extends BackupDeps {
  /** Patroni's REST API: a restore also restarts the restored leader once (its postgresql.conf). */
  patroni: Pick<
    PatroniActivities,
    'patroniGetConfig' | 'patroniPatchConfig' | 'patroniGetCluster' | 'patroniRestart'
  >;
  /** The Proxmox host: `pct exec` in a CT and a command line on the host itself (the copy's pipe). */
  hostFor(proxmox: Inventory['proxmox']): Promise<Pick<ProxmoxHost, 'exec' | 'push' | 'run' | 'status'>>;
}

export type RestoreMode = 'new-cluster' | 'in-place';

const refuse = (message: string) =>
  ApplicationFailure.create({ type: Failures.RestoreRefused, message, nonRetryable: true });

/** A command in a member's CT (as root unless `as`); throws with its last lines unless `ok`. */
async function inMember(
  deps: RestoreDeps,
  inv: Inventory,
  hostname: string,
  argv: string[],
  o: { ok?: boolean; timeoutMs?: number; as?: string } = {},
) {
  const node = findNode(inv, 'postgres', hostname);
  const sh = await deps.hostFor(inv.proxmox);
  const full = o.as ? ['runuser', '-u', o.as, '--', ...argv] : argv;
  const r = await heartbeating(
    () => `${hostname}: ${argv.slice(0, 2).join(' ')}`,
    () => sh.exec(node.vmid, full, { timeoutMs: o.timeoutMs ?? 120_000, signal: cancellationSignal() }),
  );
  if (r.code !== 0 && !o.ok)
    throw new Error(
      `${argv[0]} ${argv[1] ?? ''} on ${hostname} (CT ${node.vmid}) exited with ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-4).join(' ')}`,
    );
  return r;
}

const exists = async (deps: RestoreDeps, inv: Inventory, hostname: string, path: string) =>
  (await inMember(deps, inv, hostname, ['test', '-e', path], { ok: true })).code === 0;

/** Where a member's data directory goes aside during a restore (the rollback path). */
export const oldDataDir = (inv: Inventory, tag: string) => `${inv.postgresql.dataDir}.pgha-old-${tag}`;

/** The member's data directory: present, and its system identifier (pg_controldata, Patroni running or not). */
async function memberData(deps: RestoreDeps, inv: Inventory, hostname: string) {
  const pg = inv.postgresql;
  if (!(await exists(deps, inv, hostname, `${pg.dataDir}/PG_VERSION`))) return { hasData: false };
  const r = await inMember(deps, inv, hostname, [`${pg.binDir}/pg_controldata`, '-D', pg.dataDir], {
    ok: true,
    as: pg.osUser,
  });
  const systemId = /Database system identifier:\s*(\d+)/.exec(r.stdout)?.[1];
  return { hasData: true, ...(systemId ? { systemId } : {}) };
}

/**
 * `sh -c` program (positional: Barman's wals directory, the first segment as segmentOf gives it):
 * a tar stream on stdout of every WAL segment from that segment on (every timeline) and every
 * history file — what a restore to any target after that backup can need.
 * (No regex intervals: Debian's mawk has none.)
 */
export const WAL_SINCE_TAR =
  'cd "$1" && find . -type f | awk -v b="$2" \'{ n = $0; sub(/.*\\//, "", n); if ((length(n) == 16 && n ~ /^[0-9A-F]+\\.history$/) || (length(n) == 24 && n ~ /^[0-9A-F]+$/ && substr(n, 9, 16) >= b)) print }\' | tar -cf - -T -';

/** The WAL segment file name (without timeline) an LSN falls in: 16 MiB segments. */
export function segmentOf(lsn: string): string {
  const v = lsnValue(lsn);
  const seg = v >> 24n;
  return (
    (seg >> 8n).toString(16).padStart(8, '0') + (seg & 0xffn).toString(16).padStart(8, '0')
  ).toUpperCase();
}

export interface RestoreWindow {
  /** The oldest DONE backup's consistent point. */
  fromTime: string;
  fromLsn: string;
  /** The end of the archive: the last archived WAL segment's end, and the moment WAL was last switched. */
  toLsn: string;
  toTime: string;
  /** Whether `barman switch-wal --archive` succeeded (else toTime is the last segment's archive time). */
  switched: boolean;
}

export interface RestorePlan {
  mode: RestoreMode;
  source: string;
  cluster: string;
  backup: DrillBackup;
  target: RestoreTarget;
  window: RestoreWindow;
  /** The member that restores (the leader for in place), then the others clone from it. */
  restoreOn: string;
  members: { hostname: string; hasData: boolean; systemId?: string }[];
  /** What the restore loses, in words (the approval gate shows it). */
  loses: string;
  tag: string;
}

const inWindow = (w: RestoreWindow) =>
  `the recoverable window is ${w.fromTime} (LSN ${w.fromLsn}, the oldest backup's end) to ${w.toTime} (LSN ${w.toLsn}, the archive's end${w.switched ? '' : '; WAL could not be switched: the last archived segment'})`;

/** The end of Barman's archive after a WAL switch: the newest archived segment (name, archive time). */
async function archiveEnd(
  deps: RestoreDeps,
  src: Inventory,
): Promise<Omit<RestoreWindow, 'fromTime' | 'fromLsn'>> {
  const server = barmanServer(src);
  const switchedAt = new Date().toISOString();
  const sw = await switchWalArchived(deps, src, 60);
  // `switch-wal --archive` runs Barman's archiver itself until the switched segment is archived
  // (server.py wait_for_wal); only when it failed is `cron` asked to archive what has arrived.
  if (sw.code !== 0) await barmanCli(deps, src, ['-q', 'cron'], 120_000);
  const r = await asBackupUser(
    deps,
    src,
    [
      'sh',
      '-c',
      `find "$1" -type f -printf '%f %T@\\n' | grep -E '^[0-9A-F]{24} ' | sort | tail -n 1`,
      'last',
      `${src.backup.storage.path}/${server}/wals`,
    ],
    { timeoutMs: 120_000 },
  );
  const m = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8}) ([0-9.]+)/.exec(r.stdout.trim());
  if (!m) throw refuse(`Barman's archive of ${server} holds no WAL segment: nothing can be restored from it`);
  const next = ((BigInt(`0x${m[2]}`) << 8n) + BigInt(`0x${m[3]}`) + 1n) << 24n;
  const toLsn = `${(next >> 32n).toString(16).toUpperCase()}/${(next & 0xffffffffn).toString(16).toUpperCase()}`;
  const archived = new Date(Number(m[4]) * 1000).toISOString();
  return { toLsn, toTime: sw.code === 0 ? switchedAt : archived, switched: sw.code === 0 };
}

/** Whether a backup's consistent point is at or before the target. */
function before(b: DrillBackup, t: RestoreTarget): boolean {
  if (t.kind === 'lsn') return lsnValue(b.consistentLsn) <= lsnValue(t.lsn);
  if (t.kind === 'time') return Date.parse(b.endTime) <= Date.parse(t.time);
  return true;
}

/**
 * Everything decided before anything changes: the backup (latest: the newest that ends before the
 * target), the recoverable window (a target outside it is refused, the window in the message), a
 * backup of another cluster refused (system identifier, in place), the member that restores, and
 * what will be lost.
 */
export async function restorePlan(
  deps: RestoreDeps,
  args: {
    source: Inventory;
    inv: Inventory;
    mode: RestoreMode;
    backup: string;
    target: RestoreTarget;
    tag: string;
  },
): Promise<RestorePlan> {
  const { source: src, inv, mode, target, tag } = args;
  restoreStaging(inv, tag); // the tag's grammar
  if (!backupNode(src))
    throw refuse(`cluster ${src.cluster} has no backup CT (nodes.backup): nothing to restore from`);
  if (mode === 'in-place' && inv.cluster !== src.cluster)
    throw refuse(
      `--mode in-place restores ${src.cluster} into itself: drop --into, or use --mode new-cluster`,
    );
  if (mode === 'new-cluster') {
    if (inv.cluster === src.cluster)
      throw refuse(
        `--mode new-cluster needs --into another inventory (cluster ${src.cluster} is the source)`,
      );
    const srcIds = new Set(
      [...src.nodes.postgres, ...src.nodes.haproxy, ...src.nodes.etcd, ...src.nodes.backup].map(
        (n) => n.vmid,
      ),
    );
    const shared = [...inv.nodes.postgres, ...inv.nodes.etcd].filter((n) => srcIds.has(n.vmid));
    if (shared.length)
      throw refuse(
        `--into ${inv.cluster} shares CTs with ${src.cluster} (${shared.map((n) => n.vmid).join(', ')}): a new cluster needs CTs of its own`,
      );
  }
  // Read-only looks that do not depend on each other run side by side (each `barman` call is a
  // Python start: one after another they made most of the plan's 18.6 s on the lab, all of it
  // inside the restore's RTO): the WAL switch and the archive's end, the backups, the members.
  const members$ = Promise.all(
    inv.nodes.postgres.map(async (n) => ({
      hostname: n.hostname,
      ...(await memberData(deps, inv, n.hostname)),
    })),
  );
  members$.catch(() => undefined); // awaited below, after the backup's checks (their refusals first)
  const shown = new Map<string, Promise<DrillBackup>>();
  const choose = (id: string) => {
    if (!shown.has(id)) shown.set(id, drillChooseBackup(deps, { inv: src, backup: id }));
    return shown.get(id)!;
  };
  const listed$ = listBackups(deps, src).then((all) =>
    all.filter((b) => b.status === 'DONE' && BACKUP_ID.test(b.backup_id)),
  );
  const oldest$ = listed$.then((done) => {
    const first = [...done].sort((a, b) => a.backup_id.localeCompare(b.backup_id))[0];
    return first ? choose(first.backup_id) : undefined;
  });
  oldest$.catch(() => undefined);
  const [ends, done] = await Promise.all([archiveEnd(deps, src), listed$]);
  done.sort((a, b) => a.backup_id.localeCompare(b.backup_id));
  if (!done.length)
    throw refuse(`cluster ${src.cluster} has no DONE backup: take one first (pgha backup --cluster ...)`);
  const oldest = (await oldest$)!;
  const window: RestoreWindow = { fromTime: oldest.endTime, fromLsn: oldest.consistentLsn, ...ends };
  // a target outside the window: refused before anything changes
  if (target.kind === 'time') {
    const t = Date.parse(target.time);
    if (t < Date.parse(window.fromTime) || t > Date.parse(window.toTime))
      throw refuse(`--target-time ${target.time} is outside what can be recovered: ${inWindow(window)}`);
  }
  if (target.kind === 'lsn') {
    const l = lsnValue(target.lsn);
    if (l < lsnValue(window.fromLsn) || l > lsnValue(window.toLsn))
      throw refuse(`--target-lsn ${target.lsn} is outside what can be recovered: ${inWindow(window)}`);
  }
  // the backup: the one asked for, or the newest whose end is before the target
  let backup: DrillBackup | undefined;
  if (args.backup === 'latest') {
    for (const b of [...done].reverse()) {
      const d = await choose(b.backup_id).catch(() => undefined);
      if (d && before(d, target)) {
        backup = d;
        break;
      }
    }
    if (!backup)
      throw refuse(
        `no DONE backup of ${src.cluster} ends before ${describeTarget(target)}: ${inWindow(window)}`,
      );
  } else {
    backup = await choose(args.backup).catch((e: Error) => {
      throw refuse(e.message);
    });
    if (!before(backup, target))
      throw refuse(
        `backup ${backup.backupId} ends at ${backup.endTime} (LSN ${backup.consistentLsn}), after ${describeTarget(target)}: recovery cannot stop before a backup's end; use --backup latest (the newest backup before the target) — ${inWindow(window)}`,
      );
  }
  if (Math.floor(backup.postgresVersion / 10000) !== inv.postgresql.major)
    throw refuse(
      `backup ${backup.backupId} is of PostgreSQL ${backup.postgresVersion}; ${inv.cluster} runs ${inv.postgresql.major}`,
    );
  // the target's members and their data
  const members = await members$;
  let restoreOn = inv.nodes.postgres[0]!.hostname;
  let loses: string;
  if (mode === 'in-place') {
    const other = members.filter((m) => m.hasData && m.systemId !== backup.systemId);
    if (other.length)
      throw refuse(
        `backup ${backup.backupId} is of another cluster: its system identifier ${backup.systemId}, ${other.map((m) => `${m.hostname}'s ${m.systemId ?? 'unreadable'}`).join(', ')}; restore it with --mode new-cluster --into another inventory`,
      );
    if (!members.some((m) => m.hasData))
      throw refuse(
        `no member of ${inv.cluster} has a data directory: nothing to restore in place (use --mode new-cluster)`,
      );
    const leader = await leaderOf(deps, inv).catch(() => undefined);
    if (leader) restoreOn = leader;
    const now = leader
      ? (
          await psqlOnMember(deps, inv, leader, 'select pg_current_wal_lsn()::text, now()::text;').catch(
            () => [],
          )
        )[0]
      : undefined;
    loses =
      `every change to ${inv.cluster} after ${describeTarget(target)} is LOST` +
      (now ? ` (the cluster is at LSN ${now[0]} now, ${now[1]})` : ' (no leader answers now)') +
      `; all members stop; the old data directories are kept aside as ${oldDataDir(inv, tag)} until the restored cluster is verified, and put back if the restore fails`;
  } else {
    const had = members.filter((m) => m.hasData);
    // a deployed target: its leader restores (and stops last, so no replica promotes itself)
    const leader = had.length ? await leaderOf(deps, inv).catch(() => undefined) : undefined;
    if (leader) restoreOn = leader;
    loses = had.length
      ? `the data now on ${had.map((m) => `${m.hostname} (system id ${m.systemId ?? '?'})`).join(', ')} of ${inv.cluster} is replaced (kept aside as ${oldDataDir(inv, tag)} until verified)`
      : `nothing (no member of ${inv.cluster} has data)`;
  }
  return {
    mode,
    source: src.cluster,
    cluster: inv.cluster,
    backup,
    target,
    window,
    restoreOn,
    members,
    loses,
    tag,
  };
}

/** Patroni stopped on a member, and its PostgreSQL with it; checked after. */
export async function restoreStopMember(
  deps: RestoreDeps,
  args: { inv: Inventory; hostname: string },
): Promise<{ stopped: string[] }> {
  const { inv, hostname } = args;
  const pg = inv.postgresql;
  const stopped: string[] = [];
  const active = (
    await inMember(deps, inv, hostname, ['systemctl', 'is-active', 'patroni'], { ok: true })
  ).stdout.trim();
  if (active === 'active' || active === 'activating' || active === 'reloading') {
    await inMember(deps, inv, hostname, ['systemctl', 'stop', 'patroni'], { timeoutMs: 180_000 });
    stopped.push('patroni');
  }
  const pgRunning = async () =>
    (await exists(deps, inv, hostname, `${pg.dataDir}/PG_VERSION`)) &&
    (
      await inMember(deps, inv, hostname, [`${pg.binDir}/pg_ctl`, 'status', '-D', pg.dataDir], {
        ok: true,
        as: pg.osUser,
      })
    ).code === 0;
  if (await pgRunning()) {
    await inMember(
      deps,
      inv,
      hostname,
      [`${pg.binDir}/pg_ctl`, 'stop', '-D', pg.dataDir, '-m', 'fast', '-w', '-t', '120'],
      {
        as: pg.osUser,
        timeoutMs: 150_000,
      },
    );
    stopped.push('postgresql');
  }
  const after = (
    await inMember(deps, inv, hostname, ['systemctl', 'is-active', 'patroni'], { ok: true })
  ).stdout.trim();
  if (after === 'active' || (await pgRunning()))
    throw new Error(
      `${hostname}: Patroni (${after}) or PostgreSQL still runs after the stop: stop it by hand, then resume`,
    );
  return { stopped };
}

/** The member's data directory renamed aside (once: found there, it is left as it is). */
export async function restoreMoveAside(
  deps: RestoreDeps,
  args: { inv: Inventory; hostname: string; tag: string },
): Promise<{ old?: string }> {
  const { inv, hostname, tag } = args;
  const old = oldDataDir(inv, tag);
  if (await exists(deps, inv, hostname, old)) return { old };
  if (!(await exists(deps, inv, hostname, inv.postgresql.dataDir))) return {};
  await inMember(deps, inv, hostname, ['mv', '-T', inv.postgresql.dataDir, old]);
  if (
    !(await exists(deps, inv, hostname, old)) ||
    (await exists(deps, inv, hostname, inv.postgresql.dataDir))
  )
    throw new Error(`${hostname}: ${inv.postgresql.dataDir} was not renamed to ${old}`);
  return { old };
}

/**
 * The base backup and the WAL from its start to the archive's end (every timeline, with the history
 * files) copied from the source's backup CT into the member's staging directory, through a pipe on
 * the Proxmox host. Marked complete by a file written last; a half copy (another attempt's
 * directory) is removed and made again.
 */
export async function restoreStage(
  deps: RestoreDeps,
  args: { source: Inventory; inv: Inventory; hostname: string; backup: DrillBackup; tag: string },
): Promise<{ staged: string; walFiles: number; bytes: number; seconds: number; again: boolean }> {
  const { source: src, inv, hostname, backup, tag } = args;
  const pg = inv.postgresql;
  const st = restoreStaging(inv, tag);
  const complete = `${st.dir}/.pgha-staged`;
  const count = async () => {
    const r = await inMember(deps, inv, hostname, [
      'sh',
      '-c',
      'ls "$1" | wc -l; du -sb "$2" | cut -f1',
      'count',
      st.wal,
      st.data,
    ]);
    const [w, b] = r.stdout.trim().split('\n');
    return { walFiles: Number(w), bytes: Number(b) };
  };
  if (await exists(deps, inv, hostname, complete))
    return { staged: st.dir, ...(await count()), seconds: 0, again: true };
  if (!BACKUP_ID.test(backup.backupId)) throw refuse(`backup id ${backup.backupId}: expected ${BACKUP_ID}`);
  const bnode = backupNode(src);
  if (!bnode) throw refuse(`cluster ${src.cluster} has no backup CT`);
  const started = Date.now();
  const attempt = `${st.dir}/attempt-${activityInfo().attempt}`;
  await inMember(deps, inv, hostname, ['rm', '-rf', '--one-file-system', st.data, st.wal]);
  await inMember(deps, inv, hostname, [
    'sh',
    '-c',
    'rm -rf --one-file-system "$1"/attempt-* && mkdir -p -m 0700 "$2/data" "$2/wal"',
    'prepare',
    st.dir,
    attempt,
  ]);
  const host = await deps.hostFor(inv.proxmox);
  const serverDir = `${src.backup.storage.path}/${barmanServer(src)}`;
  const pipe = async (what: string, from: string[], to: string[]) => {
    const line = quote([
      'bash',
      '-c',
      `set -o pipefail; ${pctExec(bnode.vmid, from)} | ${pctExec(findNode(inv, 'postgres', hostname).vmid, to)}`,
    ]);
    const r = await heartbeating(
      () => `${hostname}: copying ${what} from the backup CT`,
      () => host.run(line, { timeoutMs: 3_600_000, signal: cancellationSignal() }),
    );
    if (r.code !== 0)
      throw new Error(
        `copying ${what} of backup ${backup.backupId} to ${hostname} failed (exit ${r.code}): ${r.stderr.toString().trim().split('\n').slice(-3).join(' ')}`,
      );
  };
  // the base backup (Barman's plain copy of the data directory)
  await pipe(
    'the base backup',
    [
      'runuser',
      '-u',
      src.backup.osUser,
      '--',
      'tar',
      '-C',
      `${serverDir}/base/${backup.backupId}/data`,
      '-cf',
      '-',
      '.',
    ],
    ['tar', '-C', `${attempt}/data`, '-xf', '-'],
  );
  // the WAL from the backup's first segment on (every timeline), and every history file
  const walList = WAL_SINCE_TAR;
  await pipe(
    'its WAL',
    [
      'runuser',
      '-u',
      src.backup.osUser,
      '--',
      'sh',
      '-c',
      walList,
      'wal',
      `${serverDir}/wals`,
      segmentOf(backup.beginLsn),
    ],
    ['tar', '-C', `${attempt}/wal`, '--transform', 's,.*/,,', '-xf', '-'],
  );
  // what the source's PostgreSQL left that must not come along: a pid file, signal files, slots,
  // its ALTER SYSTEM settings (synchronous_standby_names naming Barman's receiver would block every
  // commit of a cluster that has none)
  await inMember(deps, inv, hostname, [
    'sh',
    '-c',
    'cd "$1/data" && rm -f postmaster.pid postmaster.opts standby.signal recovery.signal && rm -rf pg_replslot/* && printf "# emptied by the pgha restore\\n" > postgresql.auto.conf && chmod 0700 . && chown -R "$2:$2" "$1" && chown "$2:$2" "$5" && mv -T "$1/data" "$3" && mv -T "$1/wal" "$4" && rmdir "$1"',
    'prepare',
    attempt,
    pg.osUser,
    st.data,
    st.wal,
    st.dir,
  ]);
  if (!(await exists(deps, inv, hostname, `${st.data}/PG_VERSION`)))
    throw new Error(`${hostname}: the staged copy in ${st.data} has no PG_VERSION`);
  const c = await count();
  if (c.walFiles === 0) throw new Error(`${hostname}: no WAL file was staged from the archive`);
  // complete only now, after its checks (a retry finding this file stages nothing again)
  await inMember(deps, inv, hostname, ['touch', complete]);
  return { staged: st.dir, ...c, seconds: Math.round((Date.now() - started) / 100) / 10, again: false };
}

/** patroni.yml of a member: the restore's custom bootstrap, or (restore undefined) the usual one. */
async function pushPatroniYml(
  deps: RestoreDeps,
  inv: Inventory,
  hostname: string,
  restore?: { tag: string; target: RestoreTarget },
) {
  const node = findNode(inv, 'postgres', hostname);
  const f = renderPatroniYml(inv, node, await resolveClusterSecrets(inv), restore);
  return ensureFiles({ sh: await deps.hostFor(inv.proxmox), vmid: node.vmid }, [f]);
}

/**
 * Patroni started on the restoring member with the restore's custom bootstrap — only while the data
 * directory is absent and the staged copy is there (a retry after the bootstrap took it finds the
 * restored data and starts nothing twice). The workflow then waits for it to lead.
 */
export async function restoreBootstrap(
  deps: RestoreDeps,
  args: { inv: Inventory; hostname: string; tag: string; target: RestoreTarget },
): Promise<{ bootstrapped: boolean }> {
  const { inv, hostname, tag, target } = args;
  const st = restoreStaging(inv, tag);
  const hasData = await exists(deps, inv, hostname, inv.postgresql.dataDir);
  if (hasData) {
    // restored already (the bootstrap renamed the staged copy in): Patroni must run, nothing else
    await inMember(deps, inv, hostname, ['systemctl', 'start', 'patroni']);
    return { bootstrapped: false };
  }
  if (!(await exists(deps, inv, hostname, `${st.dir}/.pgha-staged`)))
    throw new Error(
      `${hostname}: neither ${inv.postgresql.dataDir} nor a complete staged copy in ${st.dir}: stage it again`,
    );
  // a failed bootstrap of an earlier attempt left Patroni's `<data>.failed` (the staged copy, not the old data)
  const failed = `${inv.postgresql.dataDir}.failed`;
  await inMember(deps, inv, hostname, ['rm', '-rf', '--one-file-system', failed], { timeoutMs: 600_000 });
  await pushPatroniYml(deps, inv, hostname, { tag, target });
  await inMember(deps, inv, hostname, ['systemctl', 'start', 'patroni']);
  // Patroni renames the data directory to <data>.failed when the bootstrap fails, and tries again
  // without end (nothing staged any more): fail at once with PostgreSQL's own words
  const deadline = Date.now() + 7_200_000;
  for (;;) {
    if (await exists(deps, inv, hostname, failed)) {
      const log = await inMember(
        deps,
        inv,
        hostname,
        ['journalctl', '-u', 'patroni', '--no-pager', '-n', '300'],
        { ok: true },
      );
      const why = log.stdout
        .split('\n')
        .filter((l) => /FATAL|invalid value|PANIC/.test(l))
        .slice(-3);
      await inMember(deps, inv, hostname, ['systemctl', 'stop', 'patroni'], { ok: true, timeoutMs: 180_000 });
      throw new Error(
        `${hostname}: Patroni's restore bootstrap failed: ${why.map((l) => l.replace(/^.*?\]: /, '')).join(' | ') || 'see journalctl -u patroni'}`,
      );
    }
    const up = await inMember(
      deps,
      inv,
      hostname,
      [`${inv.postgresql.binDir}/pg_ctl`, 'status', '-D', inv.postgresql.dataDir],
      { ok: true, as: inv.postgresql.osUser },
    );
    if (up.code === 0 && !(await exists(deps, inv, hostname, `${inv.postgresql.dataDir}/recovery.signal`)))
      break;
    if (Date.now() > deadline) throw new Error(`${hostname}: the restore did not finish recovery in 2 h`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  return { bootstrapped: true };
}

/** A recovery setting with a value in the member's postgresql.conf (Patroni writes them there). */
const STALE_RECOVERY = "^(recovery_target(_time|_lsn|_name|_xid)?|restore_command) = '[^']";

/**
 * After the bootstrap: the usual patroni.yml back (no restore method), the staging directory
 * removed, and — while the restored leader's postgresql.conf still holds the bootstrap's recovery
 * settings (Patroni wrote them for the recovery and leaves them on a promoted primary: every later
 * base backup carried `recovery_target_time` and a `restore_command` into a removed directory, and
 * a restore of it stopped with "recovery ended before configured recovery target was reached") —
 * one restart through Patroni (POST /restart: it keeps the leader key and rewrites the file), checked.
 */
export async function restoreFinishBootstrap(
  deps: RestoreDeps,
  args: { inv: Inventory; hostname: string; tag: string },
): Promise<{ files: string[]; restarted: boolean }> {
  const { inv, hostname, tag } = args;
  const files = await pushPatroniYml(deps, inv, hostname);
  await inMember(deps, inv, hostname, ['rm', '-rf', '--one-file-system', restoreStaging(inv, tag).dir], {
    timeoutMs: 600_000,
  });
  const conf = `${inv.postgresql.dataDir}/postgresql.conf`;
  const stale = async () =>
    (await inMember(deps, inv, hostname, ['grep', '-Eq', STALE_RECOVERY, conf], { ok: true })).code === 0;
  if (!(await stale())) return { files, restarted: false };
  // Right after the bootstrap Patroni may refuse a restart (it takes the leader key at its next
  // loop): POST again until it answers 200 — a refused POST restarted nothing (the wait below
  // would only time out, as it did on the lab: 300 s, then a retry of the whole activity).
  const restartBy = Date.now() + 120_000;
  for (;;) {
    const r = await heartbeating(
      () => `${hostname}: POST /restart (the bootstrap's recovery settings out of postgresql.conf)`,
      () =>
        deps.patroni.patroniRestart({
          target: restApi(inv, hostname),
          auth: restApiAuth(inv),
          timeoutMs: 240_000,
        }),
    );
    if (r.status === 200) break;
    if (Date.now() > restartBy)
      throw new Error(
        `${hostname}: Patroni refused POST /restart for 120 s (${r.status} ${(r.text ?? '').trim().slice(0, 200)}); ${conf} still holds the restore's recovery settings`,
      );
    await new Promise((res) => setTimeout(res, 2000));
  }
  const deadline = Date.now() + 300_000;
  for (;;) {
    const up = await inMember(
      deps,
      inv,
      hostname,
      [`${inv.postgresql.binDir}/pg_ctl`, 'status', '-D', inv.postgresql.dataDir],
      { ok: true, as: inv.postgresql.osUser },
    );
    if (up.code === 0 && !(await stale())) return { files, restarted: true };
    if (Date.now() > deadline)
      throw new Error(
        `${hostname}: ${conf} still holds the restore's recovery settings 300 s after a restart`,
      );
    await new Promise((r) => setTimeout(r, 2000));
  }
}

export interface RestoreVerified {
  leader: string;
  timeline: number;
  /** The new timeline's history line: where and why recovery stopped (PostgreSQL's words). */
  stoppedAt: string;
  marker: { expected?: string; found: boolean };
  problems: string[];
}

/** The restored leader checked directly: a new timeline, where recovery stopped, the backup's marker row. */
export async function restoreVerify(
  deps: RestoreDeps,
  args: { inv: Inventory; leader: string; backup: DrillBackup; target: RestoreTarget },
): Promise<RestoreVerified> {
  const { inv, leader, backup, target } = args;
  const problems: string[] = [];
  const row = (
    await psqlOnMember(
      deps,
      inv,
      leader,
      `select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int, pg_is_in_recovery();`,
    )
  )[0];
  const timeline = Number(row?.[0]);
  if (row?.[1] !== 'f') problems.push(`${leader} is still in recovery`);
  if (!(timeline > backup.timeline))
    problems.push(`timeline ${timeline} is not after the backup's ${backup.timeline}: not promoted`);
  const hist = `pg_wal/${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
  const lines = (
    await psqlOnMember(deps, inv, leader, `select pg_read_file(${literal(hist)});`).catch(() => [])
  ).map((r) => r.join('\t'));
  const stoppedAt = lines.filter((l) => /^\d+\t/.test(l)).at(-1) ?? '';
  const why: Record<RestoreTarget['kind'], RegExp> = {
    time: /\t(before|after) \d{4}-/,
    lsn: /\t(before|after|at) LSN /i,
    name: /\tat restore point /,
    immediate: /\treached consistency/,
    latest: /\tno recovery target specified/,
  };
  if (!why[target.kind].test(stoppedAt))
    problems.push(
      `recovery did not stop at ${describeTarget(target)}: the history says ${JSON.stringify(stoppedAt || 'nothing')}`,
    );
  const marker: RestoreVerified['marker'] = { found: false };
  if (backup.name) {
    marker.expected = backup.name;
    const rows = await psqlOnMember(
      deps,
      inv,
      leader,
      `select count(*) from ${MARKER_TABLE} where id = ${literal(backup.name)};`,
    ).catch(() => [['0']]);
    marker.found = rows[0]?.[0] === '1';
    if (!marker.found)
      problems.push(`the backup's marker row ${backup.name} is missing from ${MARKER_TABLE}`);
  }
  return { leader, timeline, stoppedAt, marker, problems };
}

/** The old data directory removed once the restored cluster is verified; checked gone. */
export async function restoreRemoveOld(
  deps: RestoreDeps,
  args: { inv: Inventory; hostname: string; tag: string },
): Promise<{ removed: boolean }> {
  const { inv, hostname, tag } = args;
  const old = oldDataDir(inv, tag);
  if (!(await exists(deps, inv, hostname, old))) return { removed: false };
  await inMember(deps, inv, hostname, ['rm', '-rf', '--one-file-system', old], { timeoutMs: 1_800_000 });
  if (await exists(deps, inv, hostname, old))
    throw new Error(`${hostname}: ${old} is still there after rm -rf`);
  return { removed: true };
}

/**
 * The rollback of one member: Patroni and PostgreSQL stopped, the restored (or half restored) data
 * directory removed and the old one renamed back, the usual patroni.yml, the staging removed.
 * Idempotent; a member whose old directory is not there (it had none) keeps what it has.
 */
export async function restoreRollbackMember(
  deps: RestoreDeps,
  args: { inv: Inventory; hostname: string; tag: string },
): Promise<{ putBack: boolean }> {
  const { inv, hostname, tag } = args;
  await restoreStopMember(deps, { inv, hostname });
  await pushPatroniYml(deps, inv, hostname);
  const old = oldDataDir(inv, tag);
  let putBack = false;
  if (await exists(deps, inv, hostname, old)) {
    await inMember(deps, inv, hostname, ['rm', '-rf', '--one-file-system', inv.postgresql.dataDir], {
      timeoutMs: 1_800_000,
    });
    await inMember(deps, inv, hostname, ['mv', '-T', old, inv.postgresql.dataDir]);
    putBack = true;
  }
  // the staging, and what a failed bootstrap left (Patroni's <data>.failed: the staged copy)
  await inMember(
    deps,
    inv,
    hostname,
    ['rm', '-rf', '--one-file-system', restoreStaging(inv, tag).dir, `${inv.postgresql.dataDir}.failed`],
    { timeoutMs: 600_000 },
  );
  if (putBack && !(await exists(deps, inv, hostname, `${inv.postgresql.dataDir}/PG_VERSION`)))
    throw new Error(`${hostname}: ${inv.postgresql.dataDir} has no PG_VERSION after putting ${old} back`);
  return { putBack };
}

/**
 * Barman's WAL streaming after an in-place restore: pg_receivewal's position is on the old timeline,
 * past the new one's fork, so it is reset to the restored leader's position (`barman receive-wal
 * --reset`, with the receiver stopped) and started again.
 */
export async function restoreResetWalStreaming(
  deps: RestoreDeps,
  args: { inv: Inventory },
): Promise<{ reset: boolean }> {
  const { inv } = args;
  const node = backupNode(inv);
  if (!node) return { reset: false };
  const sh = await deps.hostFor(inv.proxmox);
  const server = barmanServer(inv);
  await sh.exec(node.vmid, ['systemctl', 'stop', BARMAN_RECEIVE_WAL], { timeoutMs: 60_000 });
  const r = await barmanCli(deps, inv, ['receive-wal', '--reset', server], 120_000);
  await sh.exec(node.vmid, ['systemctl', 'start', BARMAN_RECEIVE_WAL], { timeoutMs: 60_000 });
  if (r.code !== 0)
    throw new Error(
      `barman receive-wal --reset ${server} exited with ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' ')}`,
    );
  return { reset: true };
}
