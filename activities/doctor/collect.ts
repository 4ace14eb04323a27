/**
 * What `pgha doctor` looks at, read-only and each read with its own deadline: the status report
 * (etcd, Patroni, SQL, HAProxy), and inside the CTs through the Proxmox host (`pct exec`, argv
 * quoted by activities/command.ts): etcd.conf, the CT's addresses and listening sockets, Patroni's
 * journal, the data directory's owner and mode, the CT's clock; over SQL pg_settings and
 * pg_hba_file_rules; over Patroni's REST API its dynamic configuration. A read that fails becomes
 * an observation with its error (the check then says "unknown"), never a hang or a throw.
 */
import { ETCD_CONF_PATH } from '../render/etcd';
import type { ExecOptions, ExecResult } from '../proxmox/types';
import type { PatroniActivities } from '../patroni';
import type { PostgresActivities } from '../postgres';
import { collectClusterStatus } from '../status';
import { msg } from '../status/common';
import type { StatusDeps } from '../status/types';
import { statusInputFromInventory } from '../status/input';
import type { Inventory } from '../../runbooks/schema';
import { backupNode, restApis, sqlConn } from '../../runbooks/topology';
import { resolveTiming } from '../../runbooks/timing';
import type {
  ClockObservation,
  DoctorObservations,
  EtcdCtObservation,
  ListeningSocket,
  Observed,
  PostgresCtObservation,
} from './types';

/** The one thing doctor needs from the Proxmox host: a command in a CT (ProxmoxHost.exec). */
export interface CtExec {
  exec(vmid: number, argv: string[], opts?: ExecOptions): Promise<ExecResult>;
}

export interface DoctorDeps {
  status: StatusDeps;
  patroni: PatroniActivities;
  postgres: PostgresActivities;
  /** Absent when the Proxmox host cannot be reached: the in-CT checks are then unknown. */
  ct?: CtExec;
  ctUnavailable?: string;
  now?: () => number;
  timeoutMs?: number;
}

/** Patroni's HA-loop lines and its DCS errors (a constant pattern for journalctl -g). */
export const PATRONI_JOURNAL_PATTERN =
  'Failed to get list of machines|DCS is not accessible|EtcdConnectionFailed|no action\\.|Lock owner:|acquired session lock|promoted self to leader';
export const PATRONI_JOURNAL_LINES = 40;
/** Recent: the last few HA loops. (`-n` is not used: with `-g` journalctl prints newest first.) */
export const PATRONI_JOURNAL_SINCE = '-2min';

const ok = <T>(value: T): Observed<T> => ({ ok: true, value });
const bad = <T>(error: unknown): Observed<T> => ({ ok: false, error: msg(error) });

async function observe<T>(fn: () => Promise<T>): Promise<Observed<T>> {
  try {
    return ok(await fn());
  } catch (err) {
    return bad(err);
  }
}

/** `KEY=value` lines (quotes dropped, comments skipped): etcd.conf, an EnvironmentFile. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    out[m[1]!] = m[2]!.trim().replace(/^(['"])(.*)\1$/, '$2');
  }
  return out;
}

/** `ss -Hltnp` → sockets: `LISTEN 0 4096 10.213.50.231:2379 0.0.0.0:* users:(("etcd",pid=224,fd=8))`. */
export function parseSs(text: string): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5) continue;
    const local = cols[3]!;
    const i = local.lastIndexOf(':');
    const port = Number(local.slice(i + 1));
    if (i < 0 || !Number.isInteger(port)) continue;
    const address = local.slice(0, i).replace(/%.*$/, '');
    const proc = /users:\(\("([^"]+)"/.exec(line);
    out.push({ address, port, process: proc ? proc[1]! : null });
  }
  return out;
}

/** `ip -4 -o addr show` → the IPv4 addresses. */
export function parseIpAddr(text: string): string[] {
  return [...text.matchAll(/\binet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]!);
}

/** At most this many commands in CTs at a time (the host's sshd and lxc-attach, on a small machine). */
export const CT_COMMANDS_AT_ONCE = 4;
let running = 0;
const queue: (() => void)[] = [];

async function limited<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= CT_COMMANDS_AT_ONCE) await new Promise<void>((r) => queue.push(r));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    queue.shift()?.();
  }
}

async function run(deps: DoctorDeps, vmid: number, argv: string[], okCodes = [0]): Promise<string> {
  const ct = deps.ct;
  if (!ct) throw new Error(deps.ctUnavailable ?? 'no Proxmox host connection');
  const r = await limited(() => ct.exec(vmid, argv, { timeoutMs: deps.timeoutMs ?? 15_000 }));
  if (!okCodes.includes(r.code))
    throw new Error(`${argv[0]} exited ${r.code}: ${r.stderr.trim().split('\n').pop() ?? ''}`);
  return r.stdout;
}

function etcdCt(deps: DoctorDeps, n: Inventory['nodes']['etcd'][number]): Promise<EtcdCtObservation> {
  return Promise.all([
    observe(async () => parseIpAddr(await run(deps, n.vmid, ['ip', '-4', '-o', 'addr', 'show']))),
    observe(async () => parseEnvFile(await run(deps, n.vmid, ['cat', ETCD_CONF_PATH]))),
    observe(async () => parseSs(await run(deps, n.vmid, ['ss', '-Hltnp']))),
  ]).then(([addresses, conf, listening]) => ({
    name: n.hostname,
    vmid: n.vmid,
    ip: n.ip,
    addresses,
    conf,
    listening,
  }));
}

function postgresCt(
  deps: DoctorDeps,
  inv: Inventory,
  n: Inventory['nodes']['postgres'][number],
): Promise<PostgresCtObservation> {
  const dir = inv.postgresql.dataDir;
  const conn = sqlConn(inv, n.hostname);
  return Promise.all([
    observe(async () => {
      const [owner = '', mode = ''] = (await run(deps, n.vmid, ['stat', '-c', '%U %a', dir]))
        .trim()
        .split(' ');
      return { path: dir, owner, mode };
    }),
    observe(async () =>
      // journalctl -g exits 1 when nothing matches.
      (
        await run(
          deps,
          n.vmid,
          [
            'journalctl',
            '-u',
            'patroni',
            `--since=${PATRONI_JOURNAL_SINCE}`,
            '--no-pager',
            '-o',
            'short-iso',
            '-g',
            PATRONI_JOURNAL_PATTERN,
          ],
          [0, 1],
        )
      )
        .split('\n')
        .filter((l) => l.trim() !== '' && !l.startsWith('-- '))
        .slice(-PATRONI_JOURNAL_LINES),
    ),
    observe(async () => {
      const rows = await deps.postgres.pgSettings({
        conn,
        names: ['wal_level', 'max_wal_senders', 'max_replication_slots'],
      });
      return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
    }),
    observe(() => deps.postgres.pgHbaRules(conn)),
  ]).then(([dataDir, patroniJournal, settings, hba]) => ({
    name: n.hostname,
    vmid: n.vmid,
    ip: n.ip,
    dataDir,
    patroniJournal,
    settings,
    hba,
  }));
}

/** The CT's clock minus the midpoint of the call, ± half its round trip. */
async function clockOf(deps: DoctorDeps, name: string, vmid: number): Promise<ClockObservation> {
  const now = deps.now ?? Date.now;
  const offset = await observe(async () => {
    const t0 = now();
    const out = await run(deps, vmid, ['date', '+%s%3N']);
    const t1 = now();
    const ct = Number(out.trim());
    if (!Number.isFinite(ct)) throw new Error(`date printed ${JSON.stringify(out.trim().slice(0, 40))}`);
    return { offsetMs: ct - (t0 + t1) / 2, uncertaintyMs: (t1 - t0) / 2 };
  });
  return { name, vmid, offset };
}

async function patroniConfig(deps: DoctorDeps, inv: Inventory): Promise<Observed<Record<string, unknown>>> {
  const errors: string[] = [];
  for (const target of restApis(inv)) {
    try {
      const a = await deps.patroni.patroniGetConfig({ target, timeoutMs: deps.timeoutMs ?? 15_000 });
      if (a.status === 200 && a.body) return ok(a.body);
      errors.push(`${target.member}: ${a.status}`);
    } catch (err) {
      errors.push(`${target.member}: ${msg(err)}`);
    }
  }
  return { ok: false, error: `no member answered GET /config (${errors.join('; ')})` };
}

export async function collectDoctor(deps: DoctorDeps, inv: Inventory): Promise<DoctorObservations> {
  const all = [...inv.nodes.haproxy, ...inv.nodes.postgres, ...inv.nodes.etcd, ...inv.nodes.backup];
  const backup = backupNode(inv);
  const [status, etcd, postgres, clocks, config] = await Promise.all([
    collectClusterStatus(deps.status, statusInputFromInventory(inv)),
    Promise.all(inv.nodes.etcd.map((n) => etcdCt(deps, n))),
    Promise.all(inv.nodes.postgres.map((n) => postgresCt(deps, inv, n))),
    Promise.all(all.map((n) => clockOf(deps, n.hostname, n.vmid))),
    patroniConfig(deps, inv),
  ]);
  const user = inv.postgresql.replicationUser;
  return {
    cluster: inv.cluster,
    collectedAt: new Date((deps.now ?? Date.now)()).toISOString(),
    status,
    etcd,
    postgres,
    clocks,
    patroniConfig: config,
    expected: {
      etcdClientPort: inv.ports.etcdClient,
      etcdPeerPort: inv.ports.etcdPeer,
      osUser: inv.postgresql.osUser,
      replicationUser: user,
      timing: resolveTiming(inv.patroni),
      replicationSources: inv.nodes.postgres.map((n) => ({ name: n.hostname, ip: n.ip, user })),
      backupStreams: backup ? 1 : 0,
    },
  };
}
