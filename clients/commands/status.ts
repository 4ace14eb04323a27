/**
 * `pgha status --cluster FILE [--json]`: the seed's two check scripts (view_etcd.sh --full and
 * check_postgres_patroni.sh --full) as one report — etcd members with health, version, leader and
 * db size; Patroni members with role, state, timeline and lag, and the leader key from etcd;
 * HAProxy backends per node; then a verdict with every reason.
 *
 * HAProxy is asked through the Proxmox host (ssh, then `pct exec <vmid> -- socat ... admin.sock`).
 * Exit code: 0 healthy, 1 degraded, 2 down (so it can gate a script).
 */
import type { Command } from 'commander';
import Table from 'cli-table3';
import { Agent } from 'undici';
import { createEtcdActivities } from '../../activities/etcd';
import { createPatroniActivities } from '../../activities/patroni';
import { createPostgresActivities } from '../../activities/postgres';
import { createHaproxyActivities, runnerFromCtExec } from '../../activities/haproxy';
import { ProxmoxHost } from '../../activities/proxmox';
import {
  collectHaproxyLog,
  createStatusActivities,
  formatHaproxyLog,
  haproxyLogArgv,
  statusInputFromInventory,
  type ClusterStatus,
  type StatusInput,
} from '../../activities/status';
import { ipInCidr, loadInventory, parseCidr } from '../../runbooks/inventory';
import { backupStatus, formatBackupStatus } from '../../activities/backup/status';
import { connectClient } from '../connection';
import { listBackupSchedules } from '../schedules';

const plain = { head: [], border: [] as string[] };

function size(n: number | null): string {
  if (n === null) return '-';
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function table(head: string[], rows: (string | number)[][]): string {
  const t = new Table({ head, style: plain });
  for (const r of rows) t.push(r.map(String));
  return t.toString();
}

/** The human report. Pure: the same status object gives the same text. */
export function formatStatusReport(s: ClusterStatus): string {
  const out: string[] = [];
  out.push(`Cluster ${s.cluster} — collected ${s.collectedAt}`);
  out.push('');

  out.push(
    `etcd: ${s.etcd.healthy}/${s.etcd.total} healthy, leader ${s.etcd.leader ?? 'NONE'}${s.etcd.quorum ? '' : ', NO QUORUM'}`,
  );
  out.push(
    table(
      ['member', 'endpoint', 'health', 'leader', 'version', 'db size', 'raft term', 'error'],
      s.etcd.members.map((m) => [
        m.name,
        m.endpoint,
        m.healthy ? 'healthy' : 'UNHEALTHY',
        m.isLeader ? '*' : '',
        m.version ?? '-',
        size(m.dbSizeBytes),
        m.raftTerm ?? '-',
        m.error ?? '',
      ]),
    ),
  );
  out.push('');

  const p = s.patroni;
  const lk =
    'error' in p.leaderKey
      ? `${p.leaderKey.key} unreadable`
      : `${p.leaderKey.key} = ${p.leaderKey.value ?? '(none)'}`;
  out.push(
    `Patroni (scope ${p.scope}): leader ${p.leader ?? 'NONE'}; etcd ${lk}${p.paused ? '; PAUSED' : ''}${p.clusterFrom ? ` (topology from ${p.clusterFrom})` : ''}`,
  );
  out.push(
    'error' in p.keys
      ? `etcd keys: unreadable (${p.keys.error})`
      : `etcd keys under ${p.keys.prefix}: ${p.keys.keys.join(', ') || '(none)'}${p.keys.initialize ? `; initialize = ${p.keys.initialize}` : ''}`,
  );
  const anySql = p.members.some((m) => m.sql !== undefined);
  const head = ['member', 'host', 'role', 'state', 'replication', 'TL', 'lag', 'patroni'];
  if (anySql) head.push('pg_is_in_recovery');
  head.push('notes');
  out.push(
    table(
      head,
      p.members.map((m) => {
        const notes = [
          m.reachable ? '' : `REST API: ${m.error ?? 'no answer'}`,
          m.pendingRestart ? 'pending restart' : '',
          m.noFailover ? 'nofailover' : '',
        ].filter(Boolean);
        const row: (string | number)[] = [
          m.name,
          m.host,
          m.role ?? '-',
          m.state ?? '-',
          m.name === p.leader
            ? ''
            : m.streaming === true
              ? 'streaming'
              : m.streaming === false
                ? 'NOT STREAMING'
                : '?',
          m.timeline ?? '-',
          m.name === p.leader ? '' : m.lagBytes === null ? 'unknown' : size(m.lagBytes),
          m.patroniVersion ?? '-',
        ];
        if (anySql) {
          row.push(
            m.sql === undefined ? '-' : 'error' in m.sql ? `error: ${m.sql.error}` : String(m.sql.inRecovery),
          );
        }
        row.push(notes.join('; '));
        return row;
      }),
    ),
  );
  out.push('');

  if (!s.haproxy.asked) {
    out.push(`HAProxy: unknown (${s.haproxy.reason})`);
  } else {
    out.push('HAProxy (runtime API)');
    const rows: (string | number)[][] = [];
    for (const n of s.haproxy.nodes) {
      if (!n.reachable) {
        rows.push([n.name, '-', '-', 'UNREACHABLE', n.error ?? '']);
        continue;
      }
      for (const sv of n.servers) rows.push([n.name, sv.backend, sv.server, sv.status, sv.checkStatus]);
    }
    out.push(table(['node', 'backend', 'server', 'status', 'check'], rows));
  }
  out.push('');

  out.push(`Verdict: ${s.verdict.status.toUpperCase()}`);
  for (const r of s.verdict.reasons) out.push(`  - ${r}`);
  for (const w of s.verdict.warnings ?? []) out.push(`  warning: ${w}`);
  return out.join('\n');
}

export function exitCodeOf(s: ClusterStatus): number {
  return s.verdict.status === 'healthy' ? 0 : s.verdict.status === 'degraded' ? 1 : 2;
}

/**
 * Optional guard for machines that must only reach some networks (CI, this project's lab host):
 * PGHA_TARGET_NETWORKS=127.0.0.0/8,10.213.50.0/24 refuses any other address before connecting.
 */
export function checkTargets(
  input: StatusInput,
  networks = process.env.PGHA_TARGET_NETWORKS,
  extraHosts: string[] = [],
): void {
  if (!networks) return;
  const cidrs = networks.split(',').map((n) => {
    const c = parseCidr(n.trim());
    if (!c) throw new Error(`PGHA_TARGET_NETWORKS: ${JSON.stringify(n)} is not a CIDR like 10.213.50.0/24`);
    return c;
  });
  const hosts = [
    ...input.etcd.members.map((m) => new URL(m.url).hostname),
    ...input.patroni.members.flatMap((m) => [new URL(m.url).hostname, m.host]),
    ...extraHosts,
  ];
  const bad = hosts.filter((h) => !cidrs.some((c) => ipInCidr(h, c)));
  if (bad.length > 0) {
    throw new Error(
      `refusing to connect to ${[...new Set(bad)].join(', ')}: outside PGHA_TARGET_NETWORKS=${networks}`,
    );
  }
}

/** The cluster's backup schedules and their next run, when Temporal answers (status does not need it). */
async function scheduleLines(cluster: string): Promise<string[]> {
  try {
    const client = await connectClient();
    try {
      const rows = await listBackupSchedules(client, cluster);
      return rows.length === 0
        ? ['no backup schedule: pgha schedule backup --cluster FILE --cron ...']
        : rows.map(
            (r) =>
              `schedule ${r.scheduleId}: ${r.paused ? 'PAUSED' : `next ${r.next?.toISOString() ?? '-'}`}${r.memo?.retention ? `, retention ${r.memo.retention}` : ''}`,
          );
    } finally {
      await client.connection.close();
    }
  } catch (err) {
    return [`schedules: not read (${(err as Error).message.split('.')[0]})`];
  }
}

export function register(program: Command): void {
  program
    .command('status')
    .description(
      "the cluster's status: etcd, Patroni, PostgreSQL, HAProxy, and a verdict (exit 0 healthy, 1 degraded, 2 down)",
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option('--json', 'print the status object as JSON')
    .option('--no-sql', 'do not connect to PostgreSQL (Patroni and etcd only)')
    .option('--no-haproxy', 'do not ask HAProxy (no SSH to the Proxmox host)')
    .option(
      '--backup',
      'also the backup section: last backup, barman check, WAL streaming through the slot, next scheduled runs',
    )
    .option(
      '--haproxy-log <lines>',
      "also show the last lines of each HAProxy's log (journalctl -u haproxy)",
      Number,
    )
    .action(
      async (opts: {
        cluster: string;
        json?: boolean;
        sql: boolean;
        haproxy: boolean;
        haproxyLog?: number;
        backup?: boolean;
      }) => {
        if (opts.haproxyLog !== undefined) haproxyLogArgv(opts.haproxyLog); // a bad count fails before anything runs
        const inv = await loadInventory(opts.cluster);
        const input = statusInputFromInventory(inv, { sql: opts.sql });
        checkTargets(input, undefined, opts.haproxy ? [inv.proxmox.host] : []);
        const agent = new Agent({ connect: { timeout: 2000 }, headersTimeout: 4000, bodyTimeout: 4000 });
        // HAProxy's runtime API is reached through the Proxmox host (pct exec ... socat), as the seed does.
        let proxmox: ProxmoxHost | undefined;
        let proxmoxError: string | undefined;
        if (opts.haproxy) {
          try {
            proxmox = await ProxmoxHost.fromInventory(inv.proxmox, {
              connectTimeoutMs: 5000,
              commandTimeoutMs: 5000,
            });
          } catch (err) {
            proxmoxError = `cannot reach the Proxmox host for pct exec: ${err instanceof Error ? err.message : String(err)}`;
          }
        } else {
          proxmoxError = 'not asked (--no-haproxy)';
        }
        try {
          const status = await createStatusActivities({
            etcd: createEtcdActivities({ callTimeoutMs: 2000 }),
            patroni: createPatroniActivities({ agent, timeoutMs: 4000 }),
            postgres: createPostgresActivities({ connectTimeoutMs: 3000, statementTimeoutMs: 3000 }),
            haproxy: proxmox
              ? createHaproxyActivities({ runner: runnerFromCtExec(proxmox), timeoutMs: 5000 })
              : undefined,
          }).collectClusterStatus(input);
          if (!status.haproxy.asked && proxmoxError) status.haproxy.reason = proxmoxError;
          const logs =
            opts.haproxyLog !== undefined && proxmox
              ? await collectHaproxyLog(
                  proxmox,
                  inv.nodes.haproxy.map((n) => ({ name: n.hostname, vmid: n.vmid })),
                  opts.haproxyLog,
                )
              : undefined;
          const backup =
            opts.backup && proxmox && inv.nodes.backup.length > 0
              ? await backupStatus(
                  { shellFor: () => Promise.resolve(proxmox) },
                  { inv, leader: status.patroni.leader ?? undefined },
                )
              : undefined;
          const schedules = backup ? await scheduleLines(inv.cluster) : undefined;
          const extra = { ...(logs ? { haproxyLog: logs } : {}), ...(backup ? { backup, schedules } : {}) };
          process.stdout.write(
            opts.json
              ? `${JSON.stringify({ ...status, ...extra }, null, 2)}\n`
              : `${formatStatusReport(status)}\n${logs ? `\n${formatHaproxyLog(logs)}\n` : ''}${
                  backup ? `\n${formatBackupStatus(backup, schedules)}\n` : ''
                }`,
          );
          process.exitCode = exitCodeOf(status);
        } finally {
          proxmox?.close();
          await agent.close();
        }
      },
    );
}
