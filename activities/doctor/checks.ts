/**
 * The seed's Troubleshooting section as checks: each a pure function of what collect.ts observed,
 * each with the seed's remedy in pgha's words. Nothing here connects anywhere.
 */
import { judge } from '../status/judge';
import { ipInCidr, parseCidr } from '../../runbooks/network';
import { parseVersion, patroniSupportWarning, pgMajorOf } from '../../runbooks/patroni-versions';
import type {
  CheckStatus,
  DoctorCheck,
  DoctorObservations,
  DoctorReport,
  EtcdCtObservation,
  HbaRule,
  Observed,
} from './types';

type Check = (o: DoctorObservations) => DoctorCheck;

/** A check's result: fail/warn/unknown findings decide the status, in that order. */
function result(
  id: string,
  title: string,
  remedy: string,
  found: { fail?: string[]; warn?: string[]; unknown?: string[] },
): DoctorCheck {
  const fail = found.fail ?? [];
  const warn = found.warn ?? [];
  const unknown = found.unknown ?? [];
  const status: CheckStatus =
    fail.length > 0 ? 'fail' : warn.length > 0 ? 'warn' : unknown.length > 0 ? 'unknown' : 'pass';
  return { id, title, status, findings: [...fail, ...warn, ...unknown], remedy };
}

function read<T>(o: Observed<T>, what: string, unknown: string[]): T | undefined {
  if (o.ok) return o.value;
  unknown.push(`${what}: not read (${o.error})`);
  return undefined;
}

const hostOf = (url: string): string | undefined => {
  try {
    return new URL(url.trim()).hostname;
  } catch {
    return undefined;
  }
};

/** The hosts of a comma-separated URL list (ETCD_LISTEN_CLIENT_URLS ...). */
const urlHosts = (v: string | undefined): string[] =>
  (v ?? '')
    .split(',')
    .filter((s) => s.trim() !== '')
    .map((s) => hostOf(s) ?? s.trim());

const ANY = new Set(['0.0.0.0', '::', '*', '[::]']);

/** etcd: its addresses in etcd.conf are the CT's own ("bind: cannot assign requested address"). */
export const etcdConfig: Check = (o) => {
  const fail: string[] = [];
  const unknown: string[] = [];
  const byName = new Map(o.etcd.map((e) => [e.name, e.ip]));
  for (const e of o.etcd) {
    const addrs = read(e.addresses, `${e.name} (CT ${e.vmid}) addresses`, unknown);
    const conf = read(e.conf, `${e.name} (CT ${e.vmid}) etcd.conf`, unknown);
    if (addrs && !addrs.includes(e.ip))
      fail.push(
        `${e.name} (CT ${e.vmid}) does not have the inventory's IP ${e.ip} (it has ${addrs.join(', ') || 'none'})`,
      );
    if (!conf) continue;
    for (const key of [
      'ETCD_LISTEN_CLIENT_URLS',
      'ETCD_LISTEN_PEER_URLS',
      'ETCD_ADVERTISE_CLIENT_URLS',
      'ETCD_INITIAL_ADVERTISE_PEER_URLS',
    ]) {
      const hosts = urlHosts(conf[key]);
      if (hosts.length === 0) {
        fail.push(`${e.name}: ${key} is missing in etcd.conf`);
        continue;
      }
      const foreign = hosts.filter(
        (h) => h !== e.ip && h !== '127.0.0.1' && h !== 'localhost' && !ANY.has(h),
      );
      if (foreign.length > 0)
        fail.push(
          `${e.name}: ${key} names ${foreign.join(', ')}, not the CT's IP ${e.ip}${addrs ? ` (CT has ${addrs.join(', ')})` : ''}`,
        );
    }
    // ETCD_INITIAL_CLUSTER: name=http://ip:2380,... — every member with its own IP.
    const initial = new Map(
      (conf.ETCD_INITIAL_CLUSTER ?? '')
        .split(',')
        .filter((p) => p.includes('='))
        .map((p) => [p.slice(0, p.indexOf('=')).trim(), hostOf(p.slice(p.indexOf('=') + 1)) ?? ''] as const),
    );
    for (const [name, ip] of byName) {
      const got = initial.get(name);
      if (got === undefined) fail.push(`${e.name}: ETCD_INITIAL_CLUSTER does not list ${name}`);
      else if (got !== ip)
        fail.push(`${e.name}: ETCD_INITIAL_CLUSTER has ${name} at ${got}, the inventory at ${ip}`);
    }
  }
  return result(
    'etcd-config',
    "etcd's addresses in /etc/etcd/etcd.conf are each CT's own IP, and ETCD_INITIAL_CLUSTER names every member at its IP",
    "etcd cannot bind an address its CT does not have ('bind: cannot assign requested address'). Make the inventory's nodes.etcd[].ip the CT's real address (or fix the CT's network), then let pgha re-render etcd.conf (pgha deploy is idempotent) and restart etcd member by member (pgha etcd restart).",
    { fail, unknown },
  );
};

function listenersOf(
  e: EtcdCtObservation,
  port: number,
  sockets: { address: string; port: number; process: string | null }[],
) {
  return sockets.filter((s) => s.port === port && (s.address === e.ip || ANY.has(s.address)));
}

/** etcd: 2379 and 2380 are listened on, by etcd itself (not free, not taken by something else). */
export const etcdPorts: Check = (o) => {
  const fail: string[] = [];
  const unknown: string[] = [];
  const { etcdClientPort, etcdPeerPort } = o.expected;
  for (const e of o.etcd) {
    const sockets = read(e.listening, `${e.name} (CT ${e.vmid}) listening sockets`, unknown);
    if (!sockets) continue;
    for (const port of [etcdClientPort, etcdPeerPort]) {
      const on = listenersOf(e, port, sockets);
      const others = on.filter((s) => s.process !== null && s.process !== 'etcd');
      if (others.length > 0)
        fail.push(
          `${e.name} (CT ${e.vmid}): port ${port} on ${e.ip} is held by ${others.map((s) => s.process).join(', ')}, not etcd`,
        );
      else if (!on.some((s) => s.process === 'etcd' || s.process === null))
        fail.push(
          `${e.name} (CT ${e.vmid}): nothing listens on ${e.ip}:${port} (etcd is not running there?)`,
        );
    }
  }
  return result(
    'etcd-ports',
    `etcd listens on each member's ${etcdClientPort} (clients) and ${etcdPeerPort} (peers), and nothing else holds them`,
    "Another process on an etcd port keeps etcd from starting: stop it. Nothing listening: etcd is down on that member — read journalctl -u etcd in its CT and start it (systemctl start etcd in the CT, or pgha etcd restart); pgha status shows every member's health.",
    { fail, unknown },
  );
};

/** The seed's symptom, and the same failure in other words Patroni uses. */
const DCS_ERROR =
  /Failed to get list of machines|DCS is not accessible|EtcdConnectionFailed|EtcdKeyNotFound.*leader|etcd.*(MaxRetryError|Connection refused|timed out)/i;
/** A completed HA loop: Patroni read the DCS and decided. */
const DCS_OK =
  /no action\.|I am \(|Lock owner:|acquired session lock|promoted self to leader|following a leader/i;

/** Patroni reaches etcd: its journal's last HA-loop word is not a DCS error. */
export const patroniDcs: Check = (o) => {
  const fail: string[] = [];
  const unknown: string[] = [];
  for (const p of o.postgres) {
    const lines = read(p.patroniJournal, `${p.name} (CT ${p.vmid}) Patroni journal`, unknown);
    if (!lines) continue;
    let lastErr = -1;
    let lastOk = -1;
    lines.forEach((l, i) => {
      if (DCS_ERROR.test(l)) lastErr = i;
      else if (DCS_OK.test(l)) lastOk = i;
    });
    if (lastErr > lastOk)
      fail.push(
        `${p.name} (CT ${p.vmid}): Patroni cannot reach etcd: ${lines[lastErr]!.trim().slice(0, 240)}`,
      );
  }
  return result(
    'patroni-dcs',
    "Patroni reaches etcd (no 'Failed to get list of machines' since its last completed HA loop)",
    "Check etcd's health (pgha status), the network from the PostgreSQL CT to every etcd member's client port, and the etcd hosts in /etc/patroni/patroni.yml (pgha deploy re-renders it from the inventory); etcd must run on every member.",
    { fail, unknown },
  );
};

/** The data directory: owned by the OS user, mode 0700 or 0750 (PostgreSQL refuses anything else). */
export const dataDir: Check = (o) => {
  const fail: string[] = [];
  const unknown: string[] = [];
  for (const p of o.postgres) {
    const d = read(p.dataDir, `${p.name} (CT ${p.vmid}) data directory`, unknown);
    if (!d) continue;
    if (d.owner !== o.expected.osUser)
      fail.push(`${p.name} (CT ${p.vmid}): ${d.path} belongs to ${d.owner}, not ${o.expected.osUser}`);
    const mode = d.mode.padStart(4, '0');
    if (mode !== '0700' && mode !== '0750')
      fail.push(`${p.name} (CT ${p.vmid}): ${d.path} has mode ${mode}, PostgreSQL needs 0700 (or 0750)`);
  }
  return result(
    'data-dir',
    'each data directory belongs to the PostgreSQL OS user, mode 0700 (or 0750)',
    'PostgreSQL will not start on a data directory with other owners or wider modes: in the CT, chown -R OSUSER:OSUSER DIR and chmod 0700 DIR (pct exec VMID -- chmod 0700 DIR). A replica whose data is damaged is rebuilt with pgha reinit --member NAME.',
    { fail, unknown },
  );
};

/** Replication settings: wal_level, enough WAL senders and slots for every replica (and Barman). */
export const replicationSettings: Check = (o) => {
  const fail: string[] = [];
  const unknown: string[] = [];
  const replicas = Math.max(o.postgres.length - 1, 0);
  // A replica rebuilt with pg_basebackup -X stream holds 2 senders while the others stream.
  const senders = replicas + 1 + o.expected.backupStreams;
  const slots = replicas + o.expected.backupStreams;
  for (const p of o.postgres) {
    const s = read(p.settings, `${p.name} (CT ${p.vmid}) settings`, unknown);
    if (!s) continue;
    const wl = s.wal_level;
    if (wl !== 'replica' && wl !== 'logical')
      fail.push(`${p.name}: wal_level is ${wl ?? 'unknown'}, replication needs replica (or logical)`);
    const ws = Number(s.max_wal_senders);
    if (!(ws >= senders))
      fail.push(
        `${p.name}: max_wal_senders is ${s.max_wal_senders ?? 'unknown'}, needs at least ${senders} (${replicas} replicas, 1 more for a rebuild with pg_basebackup${o.expected.backupStreams ? ', Barman' : ''})`,
      );
    const rs = Number(s.max_replication_slots);
    if (!(rs >= slots))
      fail.push(
        `${p.name}: max_replication_slots is ${s.max_replication_slots ?? 'unknown'}, needs at least ${slots} (one per replica${o.expected.backupStreams ? ' and Barman' : ''})`,
      );
  }
  return result(
    'replication-settings',
    'wal_level, max_wal_senders and max_replication_slots allow every replica to stream',
    'Set them cluster-wide through Patroni: pgha config set wal_level=replica max_wal_senders=N max_replication_slots=N --restart switchover (all three need a restart).',
    { fail, unknown },
  );
};

const netmaskBits = (m: string): number | undefined => {
  const parts = m.split('.').map(Number);
  if (parts.length !== 4 || parts.some((x) => !(x >= 0 && x <= 255))) return undefined;
  const n = parts.reduce((a, x) => a * 256 + x, 0);
  const bits = n.toString(2).replace(/0+$/, '');
  return /^1*$/.test(bits) ? bits.length : undefined;
};

/** Does a pg_hba rule match a replication connection of `user` from `ip`? (first match wins) */
export function hbaMatches(r: HbaRule, user: string, ip: string): boolean {
  if (r.error || !['host', 'hostssl', 'hostnossl'].includes(r.type)) return false;
  if (!r.database.includes('replication')) return false;
  if (!r.userName.some((u) => u === 'all' || u === user)) return false;
  if (r.address === null || r.address === 'all') return true;
  const bits = r.netmask ? netmaskBits(r.netmask) : 32;
  const cidr = bits === undefined ? undefined : parseCidr(`${r.address}/${bits}`);
  return cidr !== undefined && ipInCidr(ip, cidr);
}

/** pg_hba on every member lets the replication user in from every member. */
export const pgHbaReplication: Check = (o) => {
  const fail: string[] = [];
  const unknown: string[] = [];
  for (const p of o.postgres) {
    const rules = read(p.hba, `${p.name} (CT ${p.vmid}) pg_hba_file_rules`, unknown);
    if (!rules) continue;
    for (const e of rules.filter((r) => r.error))
      fail.push(`${p.name}: pg_hba.conf line ${e.lineNumber} is invalid: ${e.error}`);
    for (const src of o.expected.replicationSources) {
      const first = rules.find((r) => hbaMatches(r, src.user, src.ip));
      if (!first)
        fail.push(
          `${p.name}: pg_hba.conf has no line for replication by ${src.user} from ${src.name} (${src.ip})`,
        );
      else if (first.authMethod === 'reject')
        fail.push(
          `${p.name}: pg_hba.conf line ${first.lineNumber} rejects replication by ${src.user} from ${src.name} (${src.ip})`,
        );
    }
  }
  return result(
    'pg-hba-replication',
    'pg_hba.conf on every member allows replication connections from every member',
    'Patroni writes pg_hba.conf from postgresql.pg_hba in patroni.yml, which pgha renders from postgresql.allowedNetworks: re-render it (pgha deploy is idempotent) and reload (pgha restart --member NAME, or SELECT pg_reload_conf() after putting the line back); SELECT * FROM pg_hba_file_rules shows what the next reload loads.',
    { fail, unknown },
  );
};

/** HAProxy lists every member in its backends, UP only with the right role (the status verdict's HAProxy reasons). */
export const haproxyRoles: Check = (o) => {
  const s = o.status;
  const fail: string[] = [];
  const unknown: string[] = [];
  const h = s.haproxy;
  if (!h.asked) unknown.push(`HAProxy not asked: ${h.reason}`);
  else {
    for (const n of h.nodes.filter((x) => x.reachable)) {
      for (const b of [h.writeBackend, h.readBackend].filter((x): x is string => Boolean(x))) {
        const listed = new Set(n.servers.filter((sv) => sv.backend === b).map((sv) => sv.server));
        const missing = o.postgres.map((p) => p.name).filter((m) => !listed.has(m));
        if (missing.length > 0)
          fail.push(`HAProxy ${n.name}: backend ${b} does not list ${missing.join(', ')}`);
        // The write backend's are the status verdict's (judgeDrained, with the fix command).
        const held = n.servers.filter(
          (x) => x.backend === b && b !== h.writeBackend && /MAINT|DRAIN/.test(x.state + x.status),
        );
        for (const sv of held)
          fail.push(`HAProxy ${n.name}: ${b}/${sv.server} is ${sv.status} (${sv.state})`);
      }
    }
    fail.push(...judge(s).reasons.filter((r) => r.startsWith('HAProxy ')));
  }
  return result(
    'haproxy-roles',
    'each HAProxy lists every member, the write backend UP on the leader only, the read backend on replicas only',
    "HAProxy follows Patroni's REST API (write: GET /primary, read: GET /replica): check it answers on every member (curl http://IP:8008/patroni), HAProxy's checks in /etc/haproxy/haproxy.cfg (pgha deploy re-renders it) and its stats (pgha status). A server left in MAINT or DRAIN goes back under its checks with: set server BACKEND/SERVER state ready (pgha status prints the command).",
    { fail: [...new Set(fail)], unknown },
  );
};

/** One timeline: every member (Patroni's word and PostgreSQL's) on the leader's. */
export const oneTimeline: Check = (o) => {
  const p = o.status.patroni;
  const fail: string[] = [];
  const unknown: string[] = [];
  const seen = new Map<string, number>();
  for (const m of p.members) {
    const sqlTl = m.sql && 'timeline' in m.sql ? m.sql.timeline : null;
    const tl = sqlTl ?? m.timeline;
    if (tl === null) unknown.push(`${m.name}: timeline unknown`);
    else seen.set(m.name, tl);
  }
  const distinct = [...new Set(seen.values())];
  if (distinct.length > 1) {
    const leaderTl = p.leader ? seen.get(p.leader) : undefined;
    fail.push(
      `members on ${distinct.length} timelines: ${[...seen].map(([n, t]) => `${n} ${t}`).join(', ')}${leaderTl !== undefined ? ` (the leader ${p.leader} on ${leaderTl})` : ''}`,
    );
  }
  return result(
    'timeline',
    'every member is on one timeline',
    'A member left on an old timeline (after a failover it could not rewind) does not follow the leader: rebuild it with pgha reinit --member NAME.',
    { fail, unknown },
  );
};

/** Patroni's ttl / loop_wait / retry_timeout in the DCS: Patroni's rule, and as the inventory says. */
export const patroniTiming: Check = (o) => {
  const fail: string[] = [];
  const warn: string[] = [];
  const unknown: string[] = [];
  const cfg = read(o.patroniConfig, "Patroni's dynamic configuration (GET /config)", unknown);
  if (cfg) {
    const v = { ttl: cfg.ttl, loopWait: cfg.loop_wait, retryTimeout: cfg.retry_timeout };
    const nums = Object.values(v).map(Number);
    if (nums.some((n) => !Number.isFinite(n) || n <= 0))
      fail.push(
        `ttl ${String(v.ttl)}, loop_wait ${String(v.loopWait)}, retry_timeout ${String(v.retryTimeout)}: not all set`,
      );
    else {
      const [ttl, loopWait, retryTimeout] = nums as [number, number, number];
      if (loopWait + 2 * retryTimeout > ttl)
        fail.push(
          `ttl ${ttl} < loop_wait ${loopWait} + 2 × retry_timeout ${retryTimeout}: the leader key can expire during a retry (a needless failover)`,
        );
      const t = o.expected.timing;
      if (ttl !== t.ttl || loopWait !== t.loopWait || retryTimeout !== t.retryTimeout)
        warn.push(
          `the DCS has ttl ${ttl}, loop_wait ${loopWait}, retry_timeout ${retryTimeout}; the inventory says ${t.ttl}, ${t.loopWait}, ${t.retryTimeout}`,
        );
    }
  }
  return result(
    'patroni-timing',
    "ttl, loop_wait and retry_timeout are sane (loop_wait + 2 × retry_timeout ≤ ttl) and as the inventory's patroni.timing",
    'Set them back (dynamic, no restart): pgha config set ttl=T loop_wait=L retry_timeout=R; pgha validate explains what each timing costs in write downtime.',
    { fail, warn, unknown },
  );
};

/** Patroni supports the PostgreSQL it runs; every member on one Patroni and one PostgreSQL major. */
export const versions: Check = (o) => {
  const fail: string[] = [];
  const warn: string[] = [];
  const unknown: string[] = [];
  const ms = o.status.patroni.members;
  for (const m of ms) {
    const major = pgMajorOf(m.serverVersion);
    if (!m.patroniVersion || !parseVersion(m.patroniVersion) || major === undefined) {
      unknown.push(
        `${m.name}: versions not reported (Patroni ${m.patroniVersion ?? '?'}, PostgreSQL ${m.serverVersion ?? '?'})`,
      );
      continue;
    }
    const w = patroniSupportWarning(m.patroniVersion, major);
    if (w) warn.push(`${m.name}: ${w}`);
  }
  const patronis = [...new Set(ms.map((m) => m.patroniVersion).filter(Boolean))];
  if (patronis.length > 1)
    warn.push(
      `members run different Patroni versions: ${patronis.join(', ')} (an upgrade left half done? pgha upgrade patroni)`,
    );
  const majors = [...new Set(ms.map((m) => pgMajorOf(m.serverVersion)).filter((x) => x !== undefined))];
  if (majors.length > 1) fail.push(`members run different PostgreSQL majors: ${majors.join(', ')}`);
  return result(
    'versions',
    'Patroni supports the PostgreSQL major it runs; one Patroni version and one PostgreSQL major everywhere',
    'Upgrade Patroni in place without stopping PostgreSQL: pgha upgrade patroni --cluster FILE --to VERSION (the first supported version is named above).',
    { fail, warn, unknown },
  );
};

/** Beyond these, a CT's clock is reported (etcd itself warns at 1 s between members). */
export const CLOCK_WARN_MS = 250;
export const CLOCK_FAIL_MS = 1000;

/** Clock skew between CTs: every CT against the machine pgha runs on, within the round trip. */
export const clockSkew: Check = (o) => {
  const fail: string[] = [];
  const warn: string[] = [];
  const unknown: string[] = [];
  const got: { name: string; offsetMs: number; uncertaintyMs: number }[] = [];
  for (const c of o.clocks) {
    const v = read(c.offset, `${c.name} (CT ${c.vmid}) clock`, unknown);
    if (v) got.push({ name: c.name, ...v });
  }
  if (got.length > 1) {
    const lo = got.reduce((a, b) => (b.offsetMs < a.offsetMs ? b : a));
    const hi = got.reduce((a, b) => (b.offsetMs > a.offsetMs ? b : a));
    // The skew we can be sure of: the spread minus both measurements' uncertainty.
    const sure = hi.offsetMs - lo.offsetMs - hi.uncertaintyMs - lo.uncertaintyMs;
    const line = `${hi.name} is ${Math.round(hi.offsetMs - lo.offsetMs)} ms ahead of ${lo.name} (± ${Math.round(hi.uncertaintyMs + lo.uncertaintyMs)} ms)`;
    if (sure > CLOCK_FAIL_MS) fail.push(line);
    else if (sure > CLOCK_WARN_MS) warn.push(line);
  }
  return result(
    'clock-skew',
    `the CTs' clocks agree (within ${CLOCK_WARN_MS} ms; over ${CLOCK_FAIL_MS} ms fails)`,
    "A CT uses its Proxmox host's clock and cannot set it: run NTP (chrony) on every Proxmox host and check it with chronyc tracking. Skewed clocks break etcd's leases' bookkeeping, log correlation and pgha switchover --at.",
    { fail, warn, unknown },
  );
};

/** Every check, in the seed's order. */
export const CHECKS: readonly Check[] = [
  etcdConfig,
  etcdPorts,
  patroniDcs,
  dataDir,
  replicationSettings,
  pgHbaReplication,
  haproxyRoles,
  oneTimeline,
  patroniTiming,
  versions,
  clockSkew,
];

export function diagnose(o: DoctorObservations): DoctorReport {
  const checks = CHECKS.map((c) => c(o));
  const verdict = checks.some((c) => c.status === 'fail')
    ? 'fail'
    : checks.some((c) => c.status !== 'pass')
      ? 'warn'
      : 'pass';
  return { cluster: o.cluster, collectedAt: o.collectedAt, checks, verdict };
}

/** As `pgha status`: 0 every check passed, 1 a warning (or a check that could not run), 2 a failure. */
export function doctorExitCode(r: DoctorReport): number {
  return r.verdict === 'pass' ? 0 : r.verdict === 'warn' ? 1 : 2;
}

/** The human report. Pure. */
export function formatDoctorReport(r: DoctorReport): string {
  const mark: Record<CheckStatus, string> = { pass: 'ok  ', warn: 'WARN', fail: 'FAIL', unknown: '??  ' };
  const out = [`Doctor for cluster ${r.cluster} — collected ${r.collectedAt}`, ''];
  for (const c of r.checks) {
    out.push(`[${mark[c.status]}] ${c.id}: ${c.title}`);
    for (const f of c.findings) out.push(`         - ${f}`);
    if (c.status !== 'pass') out.push(`         remedy: ${c.remedy}`);
  }
  out.push(
    '',
    `Verdict: ${r.verdict.toUpperCase()} (${r.checks.filter((c) => c.status === 'pass').length}/${r.checks.length} checks pass)`,
  );
  return out.join('\n');
}
