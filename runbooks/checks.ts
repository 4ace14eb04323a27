/**
 * Cross-field checks of an inventory, run on the raw document (defensively: any field may be
 * missing or of the wrong type) so that every problem shows at once: unique CT ids, IPs and
 * hostnames; addresses inside the subnet; etcd quorum; port clashes per role; versions and paths
 * that must agree; Patroni's timing rules; who may connect; distinct PostgreSQL roles; the Proxmox
 * host apart from the CTs. And the one walk that refuses control characters in every string.
 * Pure.
 */
import { describe, isSecretPath, pathToString, show, type InventoryIssue, type PathSeg } from './issues';
import { cidrMask, intToIp, IPV4, ipInCidr, ipToInt, parseCidr, type Cidr } from './network';
import { controlCharProblem } from './grammar';
import type { Role } from './schema';
import { PATRONI_MIN_FOR_POSTGRES, patroniSupportWarning } from './patroni-versions';
import { TIMING_PROFILES } from './timing';

/** PostgreSQL majors pgha knows how to configure (their paths, parameters and Patroni support). */
export const KNOWN_POSTGRES_MAJORS = [13, 14, 15, 16, 17, 18] as const;

export const ROLES: Role[] = ['haproxy', 'postgres', 'etcd'];
/** Every node list of an inventory: the roles, and the optional backup CT (nodes.backup). */
const NODE_LISTS = [...ROLES, 'backup'] as const;

type Report = (path: string, found: string, expected: string, fix: string) => void;

/** What every cross-check reads: the raw document, its nodes mapping, the subnet, and how to report. */
interface Ctx {
  doc: Record<string, unknown>;
  nodes: Record<string, unknown>;
  cidr: Cidr | undefined;
  err: Report;
  warn: Report;
}

/** A section of the raw document as a mapping (empty when missing or of another type). */
function obj(v: unknown): Record<string, unknown> {
  return (v && typeof v === 'object' && !Array.isArray(v) ? v : {}) as Record<string, unknown>;
}

/** Every cross-field check, each problem pushed to `out`. */
export function crossCheck(raw: unknown, out: InventoryIssue[]): void {
  if (raw === null || typeof raw !== 'object') return;
  const doc = raw as Record<string, unknown>;
  const c: Ctx = {
    doc,
    nodes: obj(doc.nodes),
    cidr: parseCidr(doc.subnet),
    err: (path, found, expected, fix) => out.push({ path, found, expected, fix, severity: 'error' }),
    warn: (path, found, expected, fix) => out.push({ path, found, expected, fix, severity: 'warning' }),
  };
  for (const check of [
    checkSubnet,
    checkNodes,
    checkPorts,
    checkVersionsAndPaths,
    checkPatroniTimings,
    checkAllowedNetworks,
    checkRoles,
    checkDataDir,
    checkProxmoxHost,
    checkBackup,
  ])
    check(c);
}

function checkSubnet({ doc, cidr, err }: Ctx): void {
  // subnet
  if (doc.subnet !== undefined && typeof doc.subnet === 'string') {
    if (!cidr)
      err(
        'subnet',
        describe(doc.subnet),
        'a CIDR like 10.213.50.0/24',
        'write the subnet as address/prefix-length',
      );
    else if ((cidr.base & ~cidrMask(cidr.bits)) >>> 0 !== 0)
      err(
        'subnet',
        describe(doc.subnet),
        'the network address of the subnet (host bits zero)',
        `write ${intToIp((cidr.base & cidrMask(cidr.bits)) >>> 0)}/${cidr.bits}`,
      );
  }
}

function checkNodes({ doc, nodes, cidr, err }: Ctx): void {
  // nodes
  const seenVmid = new Map<number, string>();
  const seenIp = new Map<string, string>();
  const seenHost = new Map<string, string>();
  for (const role of NODE_LISTS) {
    const list = nodes[role];
    if (!Array.isArray(list)) continue;
    list.forEach((n: unknown, i) => {
      if (!n || typeof n !== 'object') return;
      const node = n as Record<string, unknown>;
      const at = `nodes.${role}[${i}]`;
      if (typeof node.vmid === 'number') {
        const prev = seenVmid.get(node.vmid);
        if (prev)
          err(
            `${at}.vmid`,
            `${node.vmid}, already used by ${prev}`,
            'a CT id used once in the cluster',
            `give ${at} its own CT id`,
          );
        else seenVmid.set(node.vmid, at);
      }
      if (typeof node.ip === 'string' && IPV4.test(node.ip)) {
        const prev = seenIp.get(node.ip);
        if (prev)
          err(
            `${at}.ip`,
            `${node.ip}, already used by ${prev}`,
            'an IP address used once in the cluster',
            `give ${at} its own address`,
          );
        else seenIp.set(node.ip, at);
        if (cidr && !ipInCidr(node.ip, cidr))
          err(
            `${at}.ip`,
            `${node.ip}, outside ${String(doc.subnet)}`,
            `an address inside the cluster subnet ${String(doc.subnet)}`,
            `use an address in ${String(doc.subnet)}, or correct subnet`,
          );
        if (cidr && cidr.bits < 31 && ipToInt(node.ip) !== undefined) {
          const n32 = ipToInt(node.ip)!;
          const hostBits = (n32 & ~cidrMask(cidr.bits)) >>> 0;
          if (hostBits === 0 || hostBits === ~cidrMask(cidr.bits) >>> 0)
            err(
              `${at}.ip`,
              `${node.ip}, the network or broadcast address of ${String(doc.subnet)}`,
              'a host address',
              'choose another address',
            );
        }
      }
      if (typeof node.hostname === 'string') {
        const prev = seenHost.get(node.hostname);
        if (prev)
          err(
            `${at}.hostname`,
            `${show(node.hostname)}, already used by ${prev}`,
            'a hostname used once in the cluster',
            `rename ${at}`,
          );
        else seenHost.set(node.hostname, at);
      }
    });
  }
  if (Array.isArray(nodes.etcd)) {
    const n = nodes.etcd.length;
    if (n < 3 || n % 2 === 0)
      err(
        'nodes.etcd',
        `${n} member${n === 1 ? '' : 's'}`,
        'an odd number of etcd members, at least 3 (3 or 5), so a quorum survives the loss of a member',
        n < 3 ? `add ${3 - n} member${3 - n === 1 ? '' : 's'}` : 'add or remove one member',
      );
  }
  if (Array.isArray(nodes.postgres) && nodes.postgres.length < 2)
    err(
      'nodes.postgres',
      `${nodes.postgres.length} node${nodes.postgres.length === 1 ? '' : 's'}`,
      'at least 2 PostgreSQL + Patroni nodes (a leader and a replica to fail over to; the seed has 3)',
      'add PostgreSQL nodes',
    );
  if (Array.isArray(nodes.haproxy) && nodes.haproxy.length < 1)
    err(
      'nodes.haproxy',
      'no HAProxy node',
      'at least 1 HAProxy node (the seed has 2)',
      'add an HAProxy node',
    );
}

function checkPorts({ doc, err }: Ctx): void {
  // ports: clashes on one node (each node holds one role)
  const ports = (doc.ports && typeof doc.ports === 'object' ? doc.ports : {}) as Record<string, unknown>;
  const portOf = (k: string, d: number) => (typeof ports[k] === 'number' ? (ports[k] as number) : d);
  const roleP: Record<Role, [string, number][]> = {
    haproxy: [
      ['haproxyWrite', portOf('haproxyWrite', 5432)],
      ['haproxyRead', portOf('haproxyRead', 5433)],
      ['haproxyStats', portOf('haproxyStats', 8404)],
    ],
    postgres: [
      ['postgresql', portOf('postgresql', 5432)],
      ['patroniRestApi', portOf('patroniRestApi', 8008)],
    ],
    etcd: [
      ['etcdClient', portOf('etcdClient', 2379)],
      ['etcdPeer', portOf('etcdPeer', 2380)],
    ],
  };
  for (const role of ROLES) {
    const seen = new Map<number, string>();
    for (const [k, v] of roleP[role]) {
      const prev = seen.get(v);
      if (prev)
        err(
          `ports.${k}`,
          `${v}, the same as ports.${prev} on the ${role} nodes`,
          `a port not used by another service on the ${role} nodes`,
          `choose another port for ports.${k}`,
        );
      else seen.set(v, k);
    }
  }
}

function checkVersionsAndPaths({ doc, nodes, err, warn }: Ctx): void {
  // versions / paths
  const versions = (doc.versions && typeof doc.versions === 'object' ? doc.versions : {}) as Record<
    string,
    unknown
  >;
  const pgv =
    typeof versions.postgresql === 'string' ? /^(\d+)\.\d+(\.\d+)?$/.exec(versions.postgresql) : null;
  if (pgv) {
    const major = Number(pgv[1]);
    if (!(KNOWN_POSTGRES_MAJORS as readonly number[]).includes(major))
      err(
        'versions.postgresql',
        `"${versions.postgresql as string}" (major ${major})`,
        `a PostgreSQL major pgha knows: ${KNOWN_POSTGRES_MAJORS.join(', ')}`,
        `use one of these majors, e.g. versions.postgresql: "18.1"`,
      );
    // Patroni that does not support this PostgreSQL major (3.3.x with 18): a warning naming the fix.
    const unsupported =
      typeof versions.patroni === 'string' ? patroniSupportWarning(versions.patroni, major) : undefined;
    if (unsupported)
      warn(
        'versions.patroni',
        `"${versions.patroni as string}" with PostgreSQL ${major}`,
        `Patroni ${PATRONI_MIN_FOR_POSTGRES[major]} or later for PostgreSQL ${major}`,
        unsupported,
      );
    const pg = (doc.postgresql && typeof doc.postgresql === 'object' ? doc.postgresql : {}) as Record<
      string,
      unknown
    >;
    for (const k of ['binDir', 'dataDir'] as const) {
      const v = pg[k];
      if (typeof v !== 'string') continue;
      // Only path segments that name a version (`18`, `pgsql-18`, `postgresql-18.4`, `pg18`): digits
      // elsewhere (a temp directory `tmp-9pOna0`, `data-2`) say nothing about the major.
      const majors = v
        .split('/')
        .map((seg) => /^(?:(?:pgsql|postgresql|postgres|pg)[-_]?)?(\d{1,2})(?:\.\d+){0,2}$/.exec(seg)?.[1])
        .filter((m): m is string => m !== undefined)
        .map(Number)
        .filter((m) => m >= 9 && m <= 30);
      if (
        k === 'binDir'
          ? !majors.includes(major) || majors.some((m) => m !== major)
          : majors.some((m) => m !== major)
      )
        err(
          `postgresql.${k}`,
          `"${v}"`,
          `a directory of PostgreSQL ${major} (versions.postgresql is "${versions.postgresql as string}")`,
          k === 'binDir'
            ? `use the major-${major} binaries, e.g. /usr/pgsql-${major}/bin, or omit binDir for that default`
            : `use a major-${major} data directory, e.g. /var/lib/pgsql/${major}/data, or omit dataDir`,
        );
    }
    const params = (pg.parameters && typeof pg.parameters === 'object' ? pg.parameters : {}) as Record<
      string,
      unknown
    >;
    for (const [k, fix] of [
      ['port', 'set ports.postgresql instead (Patroni sets port)'],
      ['listen_addresses', 'remove it: Patroni listens on the node address and localhost'],
      ['hba_file', 'remove it: Patroni writes pg_hba.conf'],
      ['data_directory', 'set postgresql.dataDir instead'],
    ] as const)
      if (k in params)
        err(`postgresql.parameters.${k}`, describe(params[k]), `no ${k} here (pgha/Patroni manage it)`, fix);
    const pe = params.password_encryption;
    if (pe !== undefined && pe !== 'scram-sha-256')
      err(
        'postgresql.parameters.password_encryption',
        describe(pe),
        'scram-sha-256 (md5 is deprecated and weaker)',
        'remove it; pgha sets scram-sha-256',
      );
    const senders = params.max_wal_senders;
    const pgCount = Array.isArray(nodes.postgres) ? nodes.postgres.length : 0;
    if (typeof senders === 'number' && pgCount >= 2 && senders < 2 * (pgCount - 1))
      warn(
        'postgresql.parameters.max_wal_senders',
        `${senders}`,
        `at least ${2 * (pgCount - 1)}: each streaming replica holds one WAL sender and a replica being (re)built by pg_basebackup -X stream holds two`,
        `raise max_wal_senders (e.g. 10) so that replicas can be rebuilt in parallel`,
      );
  }
  const install = (doc.install && typeof doc.install === 'object' ? doc.install : {}) as Record<
    string,
    Record<string, unknown> | undefined
  >;
  if (
    install.etcd?.method === 'tarball' &&
    typeof versions.etcd === 'string' &&
    !/^\d+\.\d+\.\d+$/.test(versions.etcd)
  )
    err(
      'versions.etcd',
      `"${versions.etcd}"`,
      'a full release X.Y.Z (the tarball is named by it)',
      'write e.g. versions.etcd: "3.5.13"',
    );
}

function checkPatroniTimings({ doc, err }: Ctx): void {
  // Patroni timings: Patroni needs loop_wait + 2 * retry_timeout <= ttl
  const pat = obj(doc.patroni);
  const timing =
    typeof pat.timing === 'string' && pat.timing in TIMING_PROFILES
      ? (pat.timing as 'seed' | 'recommended')
      : undefined;
  const base = TIMING_PROFILES[timing ?? 'seed'];
  // A profile's values are its own: an explicit value beside it that differs is a contradiction.
  if (timing)
    for (const k of ['ttl', 'loopWait', 'retryTimeout'] as const)
      if (typeof pat[k] === 'number' && pat[k] !== base[k])
        err(
          `patroni.${k}`,
          `${k} ${pat[k] as number} beside timing: ${timing}`,
          `the profile's own ${k} (${base[k]}), or timing: custom for explicit values`,
          `remove patroni.${k}, or write patroni.timing: custom`,
        );
  const num = (v: unknown, d: number) => (typeof v === 'number' ? v : d);
  const ttl = num(pat.ttl, base.ttl);
  const loopWait = num(pat.loopWait, base.loopWait);
  const retryTimeout = num(pat.retryTimeout, base.retryTimeout);
  if (loopWait + 2 * retryTimeout > ttl)
    err(
      'patroni.ttl',
      `ttl ${ttl} with loopWait ${loopWait} and retryTimeout ${retryTimeout}`,
      'ttl >= loopWait + 2 * retryTimeout (otherwise the leader key can expire during a retry)',
      `raise patroni.ttl to ${loopWait + 2 * retryTimeout} or lower loopWait/retryTimeout`,
    );
}

function checkAllowedNetworks({ doc, nodes, cidr, err }: Ctx): void {
  const pgDoc = obj(doc.postgresql);
  const pgNet = pgDoc.allowedNetworks;
  const nets: Cidr[] = [];
  if (Array.isArray(pgNet))
    pgNet.forEach((n, i) => {
      const c = parseCidr(n);
      const at = `postgresql.allowedNetworks[${i}]`;
      if (c) {
        nets.push(c);
        if (c.bits < 8)
          err(
            at,
            `${describe(n)}, ${2 ** (32 - c.bits)} addresses`,
            'a network of the cluster (a prefix of /8 or longer): pg_hba admits every address in it',
            'list the cluster subnet and the client networks that need PostgreSQL, e.g. 10.213.50.0/24',
          );
        else if ((c.base & ~cidrMask(c.bits)) >>> 0 !== 0)
          err(
            at,
            describe(n),
            'the network address of the network (host bits zero)',
            `write ${intToIp((c.base & cidrMask(c.bits)) >>> 0)}/${c.bits}`,
          );
      } else if (typeof n === 'string')
        err(
          `postgresql.allowedNetworks[${i}]`,
          describe(n),
          'a CIDR like 10.213.50.0/24',
          'write address/prefix-length',
        );
    });
  // Every node must be allowed by pg_hba: replicas replicate from the leader, HAProxy forwards
  // clients from its own address, and a node left out is refused on failover.
  const allowed = Array.isArray(pgNet)
    ? nets.length === pgNet.length
      ? nets
      : undefined
    : cidr
      ? [cidr]
      : undefined;
  if (allowed) {
    const outside = nodeIps(nodes).filter(([, ip]) => !allowed.some((c) => ipInCidr(ip, c)));
    if (outside.length)
      err(
        Array.isArray(pgNet) ? 'postgresql.allowedNetworks' : 'subnet',
        `networks that leave out ${outside.map(([at, ip]) => `${at} (${ip})`).join(', ')}`,
        'allowed networks covering every cluster node (pg_hba refuses the others: replication, failover and HAProxy would fail)',
        `add a network containing ${outside.map(([, ip]) => ip).join(', ')} to postgresql.allowedNetworks (e.g. the cluster subnet)`,
      );
  }
}

function checkRoles({ doc, err }: Ctx): void {
  const pgDoc = obj(doc.postgresql);
  // PostgreSQL roles: the superuser and the replication user are two roles (Patroni creates both;
  // one name would give the replication connection superuser rights, or clobber a password).
  const su = typeof pgDoc.superuser === 'string' ? pgDoc.superuser : 'postgres';
  const repl = typeof pgDoc.replicationUser === 'string' ? pgDoc.replicationUser : 'replicator';
  if (su === repl)
    err(
      'postgresql.replicationUser',
      `${show(repl)}, the same role as postgresql.superuser`,
      'a replication role distinct from the superuser',
      'name the replication user differently, e.g. replicationUser: replicator',
    );
  // The REST API user has its own password (secrets.restApiPassword): sharing a PostgreSQL role's
  // name invites sharing its password, and patroni.yml would hold two credentials for one name.
  const pat = obj(doc.patroni);
  const rest = typeof pat.restApiUsername === 'string' ? pat.restApiUsername : 'patroni';
  if (rest === su || rest === repl)
    err(
      'patroni.restApiUsername',
      `${show(rest)}, the same name as postgresql.${rest === su ? 'superuser' : 'replicationUser'}`,
      'a REST API user distinct from the PostgreSQL superuser and replication user',
      'name the REST API user differently, e.g. restApiUsername: patroni',
    );
}

function checkDataDir({ doc, err }: Ctx): void {
  const pgDoc = obj(doc.postgresql);
  const pat = obj(doc.patroni);
  // The data directory is PostgreSQL's alone: initdb wants it empty and pg_rewind / a re-clone
  // replaces it, so it holds neither the home (.pgpass), nor patroni.yml, nor the binaries.
  const dataDir = typeof pgDoc.dataDir === 'string' ? pgDoc.dataDir : undefined;
  if (dataDir && dataDir.startsWith('/'))
    for (const [field, p] of [
      ['postgresql.home', typeof pgDoc.home === 'string' ? pgDoc.home : '/var/lib/pgsql'],
      ['postgresql.binDir', pgDoc.binDir],
      ['patroni.configDir', typeof pat.configDir === 'string' ? pat.configDir : '/etc/patroni'],
    ] as const)
      if (typeof p === 'string' && (p === dataDir || p.startsWith(`${dataDir}/`)))
        err(
          'postgresql.dataDir',
          `${show(dataDir)}, which ${p === dataDir ? 'is' : 'contains'} ${field} (${show(p)})`,
          `a data directory of its own, apart from ${field}`,
          `move the data directory below its own path, e.g. /var/lib/pgsql/<major>/data`,
        );
}

function checkProxmoxHost({ doc, nodes, err }: Ctx): void {
  // The Proxmox host is not one of the CTs it runs (pgha would ssh into a CT, not the host).
  const prox = (doc.proxmox && typeof doc.proxmox === 'object' ? doc.proxmox : {}) as Record<string, unknown>;
  if (typeof prox.host === 'string') {
    const same =
      nodeIps(nodes).find(([, ip]) => ip === prox.host) ??
      nodeHostnames(nodes).find(([, h]) => h === prox.host);
    if (same)
      err(
        'proxmox.host',
        `${show(prox.host)}, the ${IPV4.test(prox.host) ? 'address' : 'hostname'} of ${same[0]}`,
        'the Proxmox host address, distinct from every CT address',
        `set proxmox.host to the host's own address, or correct ${same[0]}.ip`,
      );
  }
}

/** `[nodes.<role>[i], hostname]` of every node with a hostname. */
function nodeHostnames(nodes: Record<string, unknown>): [string, string][] {
  const out: [string, string][] = [];
  for (const role of NODE_LISTS) {
    const list = nodes[role];
    if (!Array.isArray(list)) continue;
    list.forEach((n: unknown, i) => {
      const h = n && typeof n === 'object' ? (n as Record<string, unknown>).hostname : undefined;
      if (typeof h === 'string') out.push([`nodes.${role}[${i}]`, h]);
    });
  }
  return out;
}

/** `[nodes.<role>[i], ip]` of every node with a well-formed IP. */
function nodeIps(nodes: Record<string, unknown>): [string, string][] {
  const out: [string, string][] = [];
  for (const role of NODE_LISTS) {
    const list = nodes[role];
    if (!Array.isArray(list)) continue;
    list.forEach((n: unknown, i) => {
      const ip = n && typeof n === 'object' ? (n as Record<string, unknown>).ip : undefined;
      if (typeof ip === 'string' && IPV4.test(ip)) out.push([`nodes.${role}[${i}]`, ip]);
    });
  }
  return out;
}

/**
 * Every string in the document (values and keys, at any depth) free of control characters: each
 * may be rendered into a config file or a unit, where a newline starts a new directive. A value at
 * a secret path (isSecretPath) is described without being shown. An alias that contains itself is refused.
 */
export function controlCharIssues(raw: unknown): InventoryIssue[] {
  const out: InventoryIssue[] = [];
  const onPath = new Set<object>();
  const walk = (v: unknown, path: PathSeg[]): void => {
    const at = pathToString(path);
    if (typeof v === 'string') {
      const problem = controlCharProblem(v);
      if (problem)
        out.push({
          path: at,
          found: isSecretPath(at) ? problem : `${show(v)}, ${problem}`,
          expected:
            'a single-line value without control characters (it is written into a config file, a unit or a command, where a newline starts a new directive)',
          fix: `remove the control character from ${at || 'the document'}`,
          severity: 'error',
        });
      return;
    }
    if (v === null || typeof v !== 'object') return;
    if (onPath.has(v)) {
      out.push({
        path: at,
        found: 'a YAML alias that contains itself',
        expected: 'a finite value',
        fix: `write ${at || 'the document'} out without the recursive alias`,
        severity: 'error',
      });
      return;
    }
    onPath.add(v);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, i]));
    else
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
        const kp = controlCharProblem(k);
        if (kp)
          out.push({
            path: isSecretPath(at) ? at : pathToString([...path, k]),
            found: isSecretPath(at) ? `a key ${kp}` : `a key ${show(k)}, ${kp}`,
            expected: 'keys without control characters',
            fix: `rename the key under ${at || 'the document'}`,
            severity: 'error',
          });
        else walk(x, [...path, k]);
      }
    onPath.delete(v);
  };
  walk(raw, []);
  return out;
}

/**
 * The backup CT: its two roles have their own passwords (required with nodes.backup) and names
 * distinct from each other and from Patroni's roles (one name would merge their rights or clobber a
 * password Patroni sets).
 */
function checkBackup({ doc, nodes, err }: Ctx): void {
  checkBackupSynchronous({ doc, nodes, err });
  if (!Array.isArray(nodes.backup) || nodes.backup.length === 0) return;
  const secrets = obj(doc.secrets);
  for (const [name, file] of [
    ['barmanPassword', 'barman-password'],
    ['streamingBarmanPassword', 'streaming-barman-password'],
  ] as const)
    if (secrets[name] === undefined)
      err(
        `secrets.${name}`,
        'nothing',
        'a secret reference: required when nodes.backup has a backup CT',
        `add secrets.${name}: 'file:/var/lib/pgha/secrets/<cluster>/${file}' and run pgha secrets init --cluster FILE`,
      );
  const pgDoc = obj(doc.postgresql);
  const b = obj(doc.backup);
  const taken: [string, string][] = [
    ['postgresql.superuser', typeof pgDoc.superuser === 'string' ? pgDoc.superuser : 'postgres'],
    [
      'postgresql.replicationUser',
      typeof pgDoc.replicationUser === 'string' ? pgDoc.replicationUser : 'replicator',
    ],
  ];
  for (const [field, dflt] of [
    ['user', 'barman'],
    ['streamingUser', 'streaming_barman'],
  ] as const) {
    const v = typeof b[field] === 'string' ? b[field] : dflt;
    const same = taken.find(([, t]) => t === v);
    if (same)
      err(
        `backup.${field}`,
        `${show(v)}, the same role as ${same[0]}`,
        `a role of Barman's own, distinct from ${taken.map(([f]) => f).join(' and ')}`,
        `name it differently, e.g. backup.${field}: ${dflt}`,
      );
    taken.push([`backup.${field}`, v]);
  }
}

/**
 * backup.synchronous: Barman's receiver as the synchronous standby needs a backup CT, commits that
 * wait for it (synchronous_commit neither off nor local), and synchronous_standby_names left to
 * pgha (it names the receiver on every member).
 */
function checkBackupSynchronous({ doc, nodes, err }: Pick<Ctx, 'doc' | 'nodes' | 'err'>): void {
  if (obj(doc.backup).synchronous !== true) return;
  if (!Array.isArray(nodes.backup) || nodes.backup.length === 0)
    err(
      'backup.synchronous',
      'true, and no backup CT',
      'a backup CT in nodes.backup (its Barman is the synchronous standby)',
      'add the backup CT under nodes.backup, or set backup.synchronous: false',
    );
  const params = obj(obj(doc.postgresql).parameters);
  const commit = params.synchronous_commit;
  if (commit === 'off' || commit === 'local' || commit === false)
    err(
      'postgresql.parameters.synchronous_commit',
      `${show(String(commit))} with backup.synchronous: true`,
      'on, remote_write or remote_apply (a commit waits for the synchronous standby)',
      'remove synchronous_commit (default on), or set backup.synchronous: false',
    );
  if (params.synchronous_standby_names !== undefined)
    err(
      'postgresql.parameters.synchronous_standby_names',
      `${show(String(params.synchronous_standby_names))} with backup.synchronous: true`,
      "nothing: pgha names Barman's WAL receiver there on every member",
      'remove postgresql.parameters.synchronous_standby_names',
    );
}
