/**
 * Barman behind the backup interface. The cluster side, as Barman's documentation asks for a
 * backup user without superuser rights:
 * - `barman` (backup.user): LOGIN, EXECUTE on pg_backup_start/pg_backup_stop/pg_switch_wal/
 *   pg_create_restore_point, member of pg_read_all_settings, pg_read_all_stats and (PostgreSQL
 *   >= 15) pg_checkpoint; for logical backups (pg_dump on the backup CT) pg_read_all_data;
 * - `streaming_barman` (backup.streamingUser): LOGIN REPLICATION (pg_basebackup, pg_receivewal);
 * - passwords from the secrets, set as SCRAM verifiers computed here (the clear text never reaches
 *   the server), and only when the stored verifier does not match;
 * - the slot backup.slot as a Patroni permanent physical slot in the DCS configuration, so it
 *   exists on whichever member leads (deployCluster's bootstrap.dcs has it already; a cluster that
 *   gains a backup CT later gets it here by PATCH /config).
 * SQL runs in the leader's CT through `pct exec` as the postgres OS user over the local socket.
 */
import { Failures } from '../../runbooks/failures';
import { resolveClusterSecrets } from '../../runbooks/inventory';
import type { Inventory } from '../../runbooks/schema';
import { backupNode, findNode, restApi, restApiAuth, restApis } from '../../runbooks/topology';
import { clusterLeader } from '../patroni';
import { setTimeout as sleep } from 'node:timers/promises';
import { heartbeat } from '../poll';
import {
  BARMAN_RECEIVER_NAME,
  PG_SOCKET_DIR,
  barmanServer,
  barmanSynchronousStandbyNames,
  synchronousStandbySql,
} from '../render';
import { barmanCheck, barmanCli, type BarmanCheck, type CliResult } from './cli';
import { scramMatches, scramVerifier } from './scram';
import type { BackupDeps, BackupPrepared, BackupSynchronous, BackupTool } from './types';

export class BackupNotLeaderError extends Error {
  override readonly name = Failures.BackupNotLeader;
}

/** A role name as an SQL identifier (the schema allows only identifiers; quoting keeps it exact). */
const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;
const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/**
 * A database name as psql's `-d` value: a conninfo string, so a name holding `=` or starting with
 * `-` is never read as connection parameters or an option.
 */
export const dbnameConninfo = (db: string) => `dbname='${db.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/**
 * psql's argv for SQL on stdin and tab-separated rows out, over a local socket: as the superuser,
 * quiet, unaligned, stopping at the first error. Shared by the members and a drill's scratch copy.
 */
export function psqlArgv(
  inv: Inventory,
  to: { socketDir: string; port: number; database: string },
): string[] {
  return [
    `${inv.postgresql.binDir}/psql`,
    '-X',
    '-q',
    '-A',
    '-t',
    '-F',
    '\t',
    '-v',
    'ON_ERROR_STOP=1',
    '-h',
    to.socketDir,
    '-p',
    String(to.port),
    '-U',
    inv.postgresql.superuser,
    '-d',
    dbnameConninfo(to.database),
    '-f',
    '-',
  ];
}

/** psql's unaligned output as rows of fields. */
export const psqlRows = (stdout: string): string[][] =>
  stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));

/** The leader's name, from the first member whose GET /cluster answers. */
export async function leaderOf(deps: BackupDeps, inv: Inventory): Promise<string> {
  for (const target of restApis(inv)) {
    const r = await deps.patroni.patroniGetCluster({ target }).catch(() => undefined);
    const l = r?.status === 200 && r.body ? clusterLeader(r.body) : undefined;
    if (l) return l;
  }
  throw new Error(
    `cluster ${inv.cluster} has no leader (asked ${restApis(inv)
      .map((t) => t.url)
      .join(', ')})`,
  );
}

/**
 * `barman switch-wal --force --archive`: the current WAL segment closed and waited for until it is in
 * Barman's archive. Barman archives a streamed segment only once pg_receivewal has begun the next
 * one (with no `.partial` after it, the last full file stays in `streaming/`: wal_archiver.py
 * get_next_batch), and on a quiet cluster the next WAL may come only with the bgwriter's standby
 * snapshot, up to 15 s later — bench:restore's plan waited 9–20 s on it. So while the switch waits,
 * the leader commits an empty transaction with an xid (`select pg_current_xact_id()`: a commit
 * record, no table touched) every 500 ms, which begins the next segment.
 */
export async function switchWalArchived(
  deps: BackupDeps,
  inv: Inventory,
  timeoutS: number,
  leader?: string,
): Promise<CliResult> {
  let done = false;
  const sw = barmanCli(
    deps,
    inv,
    ['switch-wal', '--force', '--archive', '--archive-timeout', String(timeoutS), barmanServer(inv)],
    (timeoutS + 30) * 1000,
  ).finally(() => (done = true));
  const nudge = (async () => {
    const on = leader ?? (await leaderOf(deps, inv).catch(() => undefined));
    for (let i = 0; on && !done && i < timeoutS * 2; i++) {
      await sleep(500);
      if (!done)
        await psqlOnMember(deps, inv, on, 'select pg_current_xact_id();', 10_000).catch(() => undefined);
    }
  })();
  const r = await sw;
  await nudge;
  return r;
}

/** `barman check` lines that say nothing about whether WAL streams and a backup can start. */
const NOT_READINESS = new Set(['failed backups']);

/**
 * The gate after the backup CT is installed: bounded wait until `barman check` passes — WAL
 * streaming through the slot is up (`barman cron` starts receive-wal) and a first WAL file is
 * archived (a WAL switch forced once). Fails with the checks still failing.
 */
export async function waitBarmanReady(
  deps: BackupDeps,
  args: { inv: Inventory; timeoutMs?: number },
): Promise<BarmanCheck> {
  const { inv } = args;
  const server = barmanServer(inv);
  const deadline = Date.now() + (args.timeoutMs ?? 180_000);
  let switched = false;
  let last: BarmanCheck | undefined;
  for (;;) {
    await barmanCli(deps, inv, ['-q', 'cron']);
    last = await barmanCheck(deps, { inv });
    if (last.ok) return last;
    const failing = last.checks.filter((c) => !c.ok).map((c) => c.name);
    // An earlier backup that failed (a full disk, a killed pg_basebackup) fails `barman check`
    // until it is deleted, yet takes nothing from streaming, archiving or the next backup: not a
    // reason to wait (the restore's `barman ready` waited 180 s for it, then failed).
    if (failing.every((n) => NOT_READINESS.has(n))) return last;
    heartbeat({ what: 'barman check', failing });
    const streaming = last.checks.find((c) => c.name === 'receive-wal running')?.ok;
    if (streaming && !switched) {
      switched = (await switchWalArchived(deps, inv, 60)).code === 0;
    }
    if (Date.now() >= deadline)
      throw new Error(
        `barman check ${server} still fails after ${args.timeoutMs ?? 180_000} ms: ${last.checks
          .filter((c) => !c.ok)
          .map((c) => `${c.name} (${c.detail})`)
          .join('; ')}`,
      );
    await sleep(3000);
  }
}

/** psql in the member's CT as the postgres OS user: SQL on stdin, tab-separated rows out. */
export async function psqlOnMember(
  deps: BackupDeps,
  inv: Inventory,
  member: string,
  sql: string,
  timeoutMs = 60_000,
  database = 'postgres',
): Promise<string[][]> {
  const node = findNode(inv, 'postgres', member);
  const sh = await deps.shellFor(inv.proxmox);
  const argv = [
    'runuser',
    '-u',
    inv.postgresql.osUser,
    '--',
    ...psqlArgv(inv, { socketDir: PG_SOCKET_DIR, port: inv.ports.postgresql, database }),
  ];
  const r = await sh.exec(node.vmid, argv, { stdin: sql, timeoutMs });
  if (r.code !== 0)
    throw new Error(
      `psql on ${member} (CT ${node.vmid}) exited with ${r.code}: ${r.stderr.trim().split('\n').slice(-4).join(' ')}`,
    );
  return psqlRows(r.stdout);
}

/** The roles and grants; returns what changed. */
export async function ensureBarmanRoles(
  deps: BackupDeps,
  args: { inv: Inventory; leader: string },
): Promise<string[]> {
  const { inv, leader } = args;
  const b = inv.backup;
  const secrets = await resolveClusterSecrets(inv);
  const want = [
    { name: b.user, replication: false, password: secrets.barmanPassword },
    { name: b.streamingUser, replication: true, password: secrets.streamingBarmanPassword },
  ];
  const rows = await psqlOnMember(
    deps,
    inv,
    leader,
    `select 'recovery', pg_is_in_recovery()::text, current_setting('server_version_num');
     select 'role', rolname, rolreplication::text, rolcanlogin::text, rolsuper::text, coalesce(rolpassword, '')
       from pg_authid where rolname in (${want.map((w) => literal(w.name)).join(', ')});`,
  );
  const rec = rows.find((r) => r[0] === 'recovery');
  if (!rec || rec[1] !== 'false')
    throw new BackupNotLeaderError(
      `${leader} is not the primary (in recovery): the roles are created on the leader; retry with the current leader`,
    );
  const versionNum = Number(rec[2]);
  const have = new Map(rows.filter((r) => r[0] === 'role').map((r) => [r[1]!, r]));
  const sql: string[] = [];
  const changed: string[] = [];
  for (const w of want) {
    if (w.password === undefined)
      throw new Error(
        `the password of role ${w.name} is not set: add secrets.${w.replication ? 'streamingBarmanPassword' : 'barmanPassword'}`,
      );
    const row = have.get(w.name);
    const attrs = `LOGIN NOSUPERUSER ${w.replication ? 'REPLICATION' : 'NOREPLICATION'}`;
    if (!row) {
      sql.push(`CREATE ROLE ${ident(w.name)} ${attrs} PASSWORD ${literal(scramVerifier(w.password))};`);
      changed.push(`role ${w.name} created`);
      continue;
    }
    const [, , repl, login, sup, stored] = row;
    if (repl !== String(w.replication) || login !== 'true' || sup !== 'false') {
      sql.push(`ALTER ROLE ${ident(w.name)} ${attrs};`);
      changed.push(`role ${w.name} attributes`);
    }
    if (!scramMatches(stored, w.password)) {
      sql.push(`ALTER ROLE ${ident(w.name)} PASSWORD ${literal(scramVerifier(w.password))};`);
      changed.push(`role ${w.name} password`);
    }
  }
  // Grants are idempotent: given every time (a dropped grant comes back).
  const u = ident(b.user);
  const backupFns =
    versionNum >= 150000
      ? ['pg_backup_start(text, boolean)', 'pg_backup_stop(boolean)']
      : ['pg_start_backup(text, boolean, boolean)', 'pg_stop_backup()', 'pg_stop_backup(boolean, boolean)'];
  for (const fn of [...backupFns, 'pg_switch_wal()', 'pg_create_restore_point(text)'])
    sql.push(`GRANT EXECUTE ON FUNCTION ${fn} TO ${u};`);
  for (const role of [
    'pg_read_all_settings',
    'pg_read_all_stats',
    ...(versionNum >= 150000 ? ['pg_checkpoint'] : []),
    // Logical backups (pg_dump of every database, as this role, against a replica): read access
    // to all data, nothing more (PostgreSQL >= 14).
    ...(versionNum >= 140000 ? ['pg_read_all_data'] : []),
  ])
    sql.push(`GRANT ${role} TO ${u};`);
  await psqlOnMember(deps, inv, leader, `SET client_min_messages = warning;\n${sql.join('\n')}\n`);
  return changed;
}

/** The permanent slot in Patroni's DCS configuration; returns what changed. */
export async function ensureBarmanSlot(
  deps: BackupDeps,
  args: { inv: Inventory; leader: string },
): Promise<string[]> {
  const { inv, leader } = args;
  const slot = inv.backup.slot;
  const target = restApi(inv, leader);
  const cfg = await deps.patroni.patroniGetConfig({ target });
  if (cfg.status !== 200 || !cfg.body)
    throw new Error(
      `GET ${target.url}/config answered ${cfg.status}: cannot read Patroni's DCS configuration`,
    );
  const slots = (cfg.body.slots ?? {}) as Record<string, { type?: string } | null>;
  if (slots[slot]?.type === 'physical') return [];
  const r = await deps.patroni.patroniPatchConfig({
    target,
    auth: restApiAuth(inv),
    patch: { slots: { [slot]: { type: 'physical' } } },
  });
  if (r.status !== 200) throw new Error(`PATCH ${target.url}/config answered ${r.status}: ${r.text ?? ''}`);
  return [`permanent slot ${slot}`];
}

/** The leader's pg_stat_replication sync_state of Barman's receiver ('' when it is not connected). */
async function receiverSyncState(deps: BackupDeps, inv: Inventory, leader: string): Promise<string> {
  const rows = await psqlOnMember(
    deps,
    inv,
    leader,
    `select coalesce((select sync_state from pg_stat_replication where application_name = ${literal(BARMAN_RECEIVER_NAME)} and state = 'streaming' limit 1), '');`,
  );
  return rows[0]?.[0] ?? '';
}

/**
 * backup.synchronous on the cluster: synchronous_standby_names in every member's
 * postgresql.auto.conf names Barman's receiver (or, turned off, no longer does), each member
 * checked first and changed only when it differs. Then, synchronous, the post-check: on the leader
 * Barman's receiver streaming with sync_state 'sync', and in the backup CT its pg_receivewal
 * running with --synchronous — restarted when it runs without (Barman chooses at start), bounded
 * by `timeoutMs`, heartbeating. Writes
 * wait for the receiver from the reload on: the step runs after `barman check` passed.
 */
export async function ensureBarmanSynchronous(
  deps: BackupDeps,
  args: { inv: Inventory; timeoutMs?: number },
): Promise<BackupSynchronous> {
  const { inv } = args;
  const want = barmanSynchronousStandbyNames(inv);
  const changed: string[] = [];
  let leader: string | undefined;
  for (const m of inv.nodes.postgres) {
    const rows = await psqlOnMember(
      deps,
      inv,
      m.hostname,
      `select pg_is_in_recovery()::text, coalesce((select setting from pg_file_settings
         where name = 'synchronous_standby_names' and sourcefile like '%/postgresql.auto.conf'
         order by seqno desc limit 1), '');`,
    );
    const [recovery, current] = rows[0] ?? [];
    if (recovery === 'false') leader = m.hostname;
    const sql = synchronousStandbySql(inv, current ?? '');
    if (sql.length === 0) continue;
    await psqlOnMember(deps, inv, m.hostname, `${sql.join('\n')}\n`);
    changed.push(m.hostname);
  }
  if (want === undefined) return { synchronous: false, changed };
  if (!leader)
    throw new BackupNotLeaderError(
      `no member of ${inv.cluster} is the primary (all in recovery): synchronous_standby_names is set, its check needs the leader; retry when one leads`,
    );
  const timeoutMs = args.timeoutMs ?? 120_000;
  const deadline = Date.now() + timeoutMs;
  const server = barmanServer(inv);
  for (;;) {
    // pg_stat_replication says 'sync' as soon as the name is listed; the receiver acknowledges each
    // write at once only when Barman started it with --synchronous (without, commits wait for the
    // end of a WAL segment).
    const [state, receiver] = [await receiverSyncState(deps, inv, leader), await receiverProcess(deps, inv)];
    if (state === 'sync' && receiver === 'synchronous')
      return { synchronous: true, changed, leader, syncState: state };
    heartbeat({
      what: `${BARMAN_RECEIVER_NAME} on ${leader}`,
      syncState: state || 'not connected',
      receiver,
    });
    // Barman chooses --synchronous when it starts receive-wal: one started before the setting is
    // stopped; `barman cron` starts it again.
    if (receiver === 'asynchronous') await barmanCli(deps, inv, ['receive-wal', '--stop', server]);
    await barmanCli(deps, inv, ['-q', 'cron']);
    if (Date.now() >= deadline)
      throw new Error(
        `Barman's receiver (${BARMAN_RECEIVER_NAME}) on ${leader} is ${state || 'not streaming'} (pg_receivewal ${receiver}) after ${timeoutMs} ms with synchronous_standby_names = ${want}: writes wait for it. Look at barman check ${server} and /var/log/barman/barman.log in the backup CT; set backup.synchronous: false and deploy again to stop waiting for it`,
      );
    await sleep(2000);
  }
}

/** Barman's pg_receivewal in the backup CT: running with --synchronous, without, or not at all. */
async function receiverProcess(
  deps: BackupDeps,
  inv: Inventory,
): Promise<'synchronous' | 'asynchronous' | 'none'> {
  const node = backupNode(inv);
  if (!node) throw new Error(`cluster ${inv.cluster} has no backup CT (nodes.backup)`);
  const sh = await deps.shellFor(inv.proxmox);
  // The CT has no procps: the command lines from /proc.
  const r = await sh.exec(
    node.vmid,
    [
      'sh',
      '-c',
      'for p in /proc/[0-9]*; do tr "\\0" " " <"$p/cmdline" 2>/dev/null; echo; done | grep "^[^ ]*/pg_receivewal " || true',
    ],
    { timeoutMs: 30_000 },
  );
  const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) return 'none';
  return lines.some((l) => / --synchronous( |$)/.test(l)) ? 'synchronous' : 'asynchronous';
}

export const barman: BackupTool = {
  async prepareCluster(deps, args): Promise<BackupPrepared> {
    return { roles: await ensureBarmanRoles(deps, args), slot: await ensureBarmanSlot(deps, args) };
  },
};
