/**
 * The inventory of one cluster: what the seed keeps in its Ansible variables and prose (CT ids, IPs,
 * ports, versions, Patroni timings, PostgreSQL parameters), as one typed, validated document.
 *
 * Pure: zod and plain functions only (no I/O, no node builtins), so workflows may import the types
 * and even validate. Reading a YAML file lives in runbooks/inventory.ts.
 *
 * Every problem is reported as an {@link InventoryIssue}: the field path (`nodes.etcd[1].ip`), what
 * was found, what is expected and how to fix it. Secret fields never echo what was found.
 */
import { z } from 'zod';
import { crossCheck, controlCharIssues, ROLES } from './checks';
import {
  binDirProblem,
  durationMs,
  durationProblem,
  encodingProblem,
  pathProblem,
  roleNameProblem,
  systemDirProblem,
  unixUserProblem,
  urlProblem,
  VERSION_SHAPES,
} from './grammar';
import {
  describe,
  help,
  InventoryError,
  show,
  zodIssueToIssues,
  type InventoryIssue,
  type PghaProblem,
} from './issues';
import { isHostOrIp, IPV4 } from './network';
import { secretRefProblem } from './secret-ref';
import { resolveTiming, TIMING_NAMES } from './timing';
import type { TimingName } from './timing';

export { KNOWN_POSTGRES_MAJORS, ROLES } from './checks';
export * from './grammar';
export {
  describe,
  didYouMean,
  formatIssue,
  InventoryError,
  isSecretPath,
  pathToString,
  show,
  type FieldHelp,
  type InventoryIssue,
  type PathSeg,
  type PghaProblem,
} from './issues';
export {
  cidrMask,
  intToIp,
  ipInCidr,
  ipToInt,
  isHostOrIp,
  isIpv4,
  IPV4,
  parseCidr,
  type Cidr,
} from './network';
export { isSecretRef, secretRefProblem, type SecretRef } from './secret-ref';

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

/** A hostname of a CT: lowercase letters, digits and -, at most 63 (a DNS label). */
const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** OpenSSH's SHA256 fingerprint: `SHA256:` + 43 characters of unpadded base64 (ssh-keygen -lf). */
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;
/** HAProxy time format: a number with an optional unit (us, ms, s, m, h, d); we require a unit. */
const DURATION = /^\d+(us|ms|s|m|h|d)$/;

/**
 * `schema` refined by a grammar check: a problem becomes an issue at the field with what was found
 * (the value JSON-escaped, or for a secret only what is wrong), what is expected and the fix.
 */
function grammar<T extends z.ZodString>(
  schema: T,
  problem: (v: string) => string | undefined,
  expected: string,
  fix: string,
  secret = false,
): T {
  return schema.superRefine((v, ctx) => {
    const pr = problem(v);
    if (pr)
      ctx.addIssue({
        code: 'custom',
        message: expected,
        params: { pgha: { found: secret ? pr : `${show(v)}, ${pr}`, expected, fix } satisfies PghaProblem },
      });
  });
}

const ipv4 = (what: string) =>
  help(z.string().regex(IPV4, { message: `an IPv4 address (${what})` }), {
    expected: `an IPv4 address (${what})`,
    example: '10.213.50.21',
  });

const port = (what: string, dflt: number) =>
  help(
    z
      .number()
      .int({ message: `an integer TCP port 1-65535 (${what})` })
      .min(1, { message: `a TCP port 1-65535 (${what})` })
      .max(65535, { message: `a TCP port 1-65535 (${what})` }),
    { expected: `a TCP port 1-65535 (${what})`, example: String(dflt) },
  ).default(dflt);

const secretRefMessage =
  'a secret reference env:NAME or file:PATH (literal passwords are not accepted in an inventory)';
const secretRefFix =
  'store the password in a file (mode 0600) and write file:/path/to/it (`pgha secrets init` creates missing file: secrets), or export it and write env:NAME';

const webhookRefExpected =
  'a secret reference env:NAME or file:PATH to the webhook URL (Slack-compatible JSON POST; a literal URL is not accepted)';
const webhookRefFix =
  'store the webhook URL in a file (mode 0600) and write file:/path/to/it, or export it and write env:NAME (the URL is a secret: never the URL itself)';

/** What is wrong with a secret field's text; a non-reference is described by its length only. */
const refProblem = (v: string) =>
  v.startsWith('env:') || v.startsWith('file:')
    ? secretRefProblem(v)
    : `a literal value of ${v.length} characters (not shown)`;

const secretRef = (example: string) =>
  help(grammar(z.string(), refProblem, secretRefMessage, secretRefFix, true), {
    expected: secretRefMessage,
    example,
    secret: true,
  });

/** Whole seconds with no default of their own (Patroni's timings: the profile fills them in). */
const secondsOrProfile = (what: string, dflt: number, min = 1) =>
  help(
    z
      .number()
      .int({ message: `a whole number of seconds (${what})` })
      .min(min, { message: `at least ${min} seconds (${what})` }),
    { expected: `a whole number of seconds, at least ${min} (${what})`, example: String(dflt) },
  );

const duration = (what: string, dflt: string) => {
  const expected = `a duration with a unit, e.g. 500ms, 1s, 30m, above 0 and at most 2147483647ms (${what})`;
  return help(
    grammar(
      z.string().regex(DURATION, { message: expected }),
      durationProblem,
      expected,
      `write a positive duration within HAProxy's limit (24d), like ${dflt}`,
    ),
    { expected, example: dflt },
  ).default(dflt);
};

/** The longest hold the write frontend may put on a new connection (runbooks/README.md, "What clients must know"). */
export const WRITE_HOLD_MAX_MS = 60_000;

/**
 * haproxy.writeHold: how long HAProxy's write frontend holds a NEW connection while no write
 * server is usable (a switchover's or failover's hand-off) before it lets it go on (and fail).
 */
const holdDuration = () => {
  const expected = `a duration with a unit from 100ms to ${WRITE_HOLD_MAX_MS / 1000}s (how long HAProxy holds a new write connection while no leader is routable)`;
  return help(
    grammar(
      z.string().regex(DURATION, { message: expected }),
      (v) => {
        const ms = durationMs(v);
        if (ms === undefined) return undefined;
        return ms < 100 || ms > WRITE_HOLD_MAX_MS
          ? `${ms} ms, outside 100ms-${WRITE_HOLD_MAX_MS / 1000}s`
          : undefined;
      },
      expected,
      'write a bound above the hand-off (a switchover takes ~1.5 s), like 5s',
    ),
    { expected, example: '5s' },
  ).default('5s');
};

/**
 * An absolute, normalised path. `dir` paths are ones pgha creates, chowns or writes into (data,
 * config, home, virtualenv, package directories): never a system directory.
 */
const absPath = (what: string, example: string, kind: 'dir' | 'bin' = 'dir') => {
  const expected =
    kind === 'dir'
      ? `an absolute, normalised path of pgha's own, not a system directory (${what})`
      : `an absolute, normalised path (${what})`;
  return help(
    grammar(
      z.string(),
      (v) => pathProblem(v) ?? (kind === 'dir' ? systemDirProblem(v) : binDirProblem(v)),
      expected,
      `write an absolute path like ${example} (letters, digits, . _ + @ , = -; no .., //, ~, spaces or trailing /)`,
    ),
    { expected, example },
  );
};

const version = (component: keyof typeof VERSION_SHAPES, example: string) => {
  const { re, expected } = VERSION_SHAPES[component];
  return help(z.string().regex(re, { message: expected }), {
    expected: `a quoted version string: ${expected}; YAML reads an unquoted 18.10 as 18.1`,
    example,
  });
};

const unixUser = (what: string, dflt: string, rootAllowed = false) =>
  help(
    grammar(
      z.string(),
      (v) => unixUserProblem(v, { rootAllowed }),
      `a Unix user name useradd accepts${rootAllowed ? '' : ', not root'} (${what})`,
      `write a user name like ${dflt} (lowercase letters, digits, _ and -)`,
    ),
    { expected: `a Unix user name${rootAllowed ? '' : ', not root'} (${what})`, example: dflt },
  ).default(dflt);

const roleName = (what: string, dflt: string) =>
  help(
    grammar(
      z.string(),
      roleNameProblem,
      `a PostgreSQL role name: an identifier of at most 63 bytes, not starting with pg_ (${what})`,
      `write a role name like ${dflt}`,
    ),
    { expected: `a PostgreSQL role name (${what})`, example: dflt },
  ).default(dflt);

const url = (what: string, example: string) =>
  help(
    grammar(
      z.string(),
      urlProblem,
      `an http(s) URL without shell metacharacters, spaces or credentials (${what})`,
      `write the plain URL, like ${example}`,
    ),
    { expected: `an http(s) URL (${what})`, example },
  );

/** A user name written into a config file (HTTP basic auth, HAProxy stats). */
const configUser = (what: string, dflt: string) =>
  help(
    z.string().regex(/^[A-Za-z0-9_.-]{1,63}$/, { message: `a user name: letters, digits, _ . - (${what})` }),
    {
      expected: `a user name of letters, digits, _ . - (${what})`,
      example: dflt,
    },
  ).default(dflt);

// ---------------------------------------------------------------------------------------------
// The schema
// ---------------------------------------------------------------------------------------------

export const NodeSchema = z.strictObject({
  vmid: help(
    z.number().int().min(100, { message: 'a Proxmox CT id, an integer 100-999999999' }).max(999999999),
    {
      expected: 'a Proxmox CT id, an integer 100-999999999',
      example: '102',
    },
  ),
  hostname: help(
    z.string().regex(HOSTNAME, { message: 'a hostname: lowercase letters, digits and -, at most 63' }),
    { expected: 'a hostname: lowercase letters, digits and - (at most 63)', example: 'pg102' },
  ),
  ip: ipv4("the CT's address on the cluster subnet"),
});

const offlineInstall = z.strictObject({
  method: z.literal('offline'),
  /** Directory inside the CT holding the offline packages (the lab bind-mounts it read-only). */
  dir: absPath('the offline package directory inside the CT', '/opt/pgha-offline').default(
    '/opt/pgha-offline',
  ),
});

export const PostgresInstallSchema = z.discriminatedUnion('method', [
  offlineInstall,
  z.strictObject({
    method: z.literal('pgdg'),
    /** The PGDG repository RPM (the seed's hosts are EL: /usr/pgsql-18/bin, /var/lib/pgsql). */
    repoRpm: url(
      'the PGDG repository RPM',
      'https://download.postgresql.org/pub/repos/yum/reporpms/EL-9-x86_64/pgdg-redhat-repo-latest.noarch.rpm',
    ).default(
      'https://download.postgresql.org/pub/repos/yum/reporpms/EL-9-x86_64/pgdg-redhat-repo-latest.noarch.rpm',
    ),
  }),
]);

export const PatroniInstallSchema = z.discriminatedUnion('method', [
  offlineInstall.extend({
    /** Python virtualenv Patroni is installed into (Debian's python refuses system-wide pip). */
    venv: absPath('the Patroni virtualenv', '/opt/patroni').default('/opt/patroni'),
  }),
  z.strictObject({
    method: z.literal('pip'),
    /** Optional virtualenv; without it pip installs system-wide (/usr/local/bin/patroni), as the seed. */
    venv: absPath('the Patroni virtualenv', '/opt/patroni').optional(),
  }),
]);

export const EtcdInstallSchema = z.discriminatedUnion('method', [
  offlineInstall,
  z.strictObject({
    method: z.literal('tarball'),
    /** Release download base; the file is etcd-v<version>-linux-amd64.tar.gz (+ SHA256SUMS). */
    baseUrl: url(
      'the etcd release download base',
      'https://github.com/etcd-io/etcd/releases/download',
    ).default('https://github.com/etcd-io/etcd/releases/download'),
  }),
]);

export const HaproxyInstallSchema = z.discriminatedUnion('method', [
  offlineInstall,
  z.strictObject({ method: z.literal('package') }),
]);

const InstallSchema = z.strictObject({
  postgresql: PostgresInstallSchema,
  patroni: PatroniInstallSchema,
  etcd: EtcdInstallSchema,
  haproxy: HaproxyInstallSchema,
});

const PortsSchema = z.strictObject({
  etcdClient: port('etcd client port', 2379),
  etcdPeer: port('etcd peer port', 2380),
  postgresql: port('PostgreSQL port', 5432),
  patroniRestApi: port('Patroni REST API port', 8008),
  haproxyWrite: port('HAProxy read-write frontend, routed to the primary', 5432),
  haproxyRead: port('HAProxy read-only frontend, routed to the replicas', 5433),
  haproxyStats: port('HAProxy stats page', 8404),
});

const PatroniSchema = z.strictObject({
  scope: help(
    z.string().regex(/^(?!\.+$)[A-Za-z0-9_][A-Za-z0-9_.-]*$/, {
      message: 'a cluster scope: letters, digits, _ . -, not starting with - or .',
    }),
    {
      expected:
        'a cluster scope: letters, digits, _ . -, not starting with - or . (it names etcd keys and is an argument of patronictl)',
      example: 'postgres',
    },
  ).default('postgres'),
  namespace: help(
    z.string().regex(/^\/((?!\.+\/)[A-Za-z0-9_.-]+\/)*$/, { message: 'an etcd key prefix like /patroni/' }),
    {
      expected: 'an etcd key prefix that starts and ends with / (e.g. /patroni/)',
      example: '/patroni/',
    },
  ).default('/patroni/'),
  /**
   * A timing profile (runbooks/timing.ts): seed (ttl 60/loop_wait 10/retry_timeout 20), recommended
   * (20/5/7) or custom (the explicit values below). Explicit values beside seed/recommended must match.
   */
  timing: help(z.enum(TIMING_NAMES), {
    expected: `a timing profile: ${TIMING_NAMES.join(', ')} (pgha validate explains each in seconds of write downtime)`,
    example: 'recommended',
  }).optional(),
  // Patroni's documented minimums: ttl >= 20, loop_wait >= 1, retry_timeout >= 3. Absent: the profile's.
  ttl: secondsOrProfile('leader key TTL, Patroni bootstrap.dcs.ttl', 60, 20).optional(),
  loopWait: secondsOrProfile('Patroni loop interval, bootstrap.dcs.loop_wait', 10, 1).optional(),
  retryTimeout: secondsOrProfile(
    'DCS/PostgreSQL retry timeout, bootstrap.dcs.retry_timeout',
    20,
    3,
  ).optional(),
  maximumLagOnFailover: help(z.number().int().min(0), {
    expected: 'bytes of WAL a replica may lag and still be promoted (bootstrap.dcs.maximum_lag_on_failover)',
    example: '1048576',
  }).default(1048576),
  useRewind: z.boolean().default(true),
  useSlots: z.boolean().default(true),
  configDir: absPath('directory of patroni.yml', '/etc/patroni').default('/etc/patroni'),
  /** User name for the REST API's unsafe endpoints (the password is secrets.restApiPassword). */
  restApiUsername: configUser('the Patroni REST API, restapi.authentication', 'patroni'),
});

const ParamValue = z.union([z.string(), z.number(), z.boolean()]);

const PostgresqlSchema = z.strictObject({
  /** Defaults to /var/lib/pgsql/<major>/data (the seed's PGDG layout). */
  dataDir: absPath('PostgreSQL data directory', '/var/lib/pgsql/18/data').optional(),
  /** Defaults to /usr/pgsql-<major>/bin. Must name the same major as versions.postgresql. */
  binDir: absPath('PostgreSQL binaries directory', '/usr/pgsql-18/bin', 'bin').optional(),
  /** Home of the postgres OS user (PGDG: /var/lib/pgsql); holds .pgpass. */
  home: absPath("the postgres OS user's home", '/var/lib/pgsql').default('/var/lib/pgsql'),
  /** The OS user PostgreSQL and Patroni run as. */
  osUser: unixUser('the OS user PostgreSQL and Patroni run as', 'postgres'),
  superuser: roleName('the superuser Patroni creates', 'postgres'),
  replicationUser: roleName('the replication user Patroni creates', 'replicator'),
  /** Networks allowed in pg_hba (besides local); defaults to [subnet]. The seed's postgresql_allowed_networks. */
  allowedNetworks: z
    .array(help(z.string(), { expected: 'a CIDR like 10.213.50.0/24', example: '10.213.50.0/24' }))
    .optional(),
  encoding: help(
    grammar(
      z.string(),
      encodingProblem,
      'a PostgreSQL server encoding (initdb -E), e.g. UTF8',
      "write one of PostgreSQL's server encodings, e.g. encoding: UTF8",
    ),
    { expected: 'a PostgreSQL server encoding, e.g. UTF8', example: 'UTF8' },
  ).default('UTF8'),
  dataChecksums: z.boolean().default(true),
  /** Cluster-wide parameters (Patroni bootstrap.dcs.postgresql.parameters). */
  parameters: z.record(z.string().regex(/^[a-z_][a-z0-9_.]*$/), ParamValue).default({}),
});

const EtcdSchema = z.strictObject({
  dataDir: absPath('etcd data directory', '/var/lib/etcd').default('/var/lib/etcd'),
  clusterToken: help(
    z.string().regex(/^[A-Za-z0-9._+@=:-]{1,128}$/, {
      message: 'an etcd cluster token: 1-128 letters, digits and . _ + @ = : -',
    }),
    {
      expected: 'an etcd cluster token: 1-128 letters, digits and . _ + @ = : - (initial-cluster-token)',
      example: 'patroni-cluster-token',
    },
  ).default('patroni-cluster-token'),
  /** Defaults by install method: tarball → /usr/local/bin (the seed), offline .deb → /usr/bin. */
  binDir: absPath('directory of etcd and etcdctl', '/usr/local/bin', 'bin').optional(),
  user: unixUser('the OS user etcd runs as', 'etcd'),
});

const HaproxySchema = z.strictObject({
  statsUser: configUser('the HAProxy stats page', 'admin'),
  checkInter: duration('health-check interval while the state is stable', '1s'),
  // A new leader is DOWN until its check passes: downInter bounds how long after Patroni's promotion
  // HAProxy admits it by itself (the guardian admits it at once); a dead server's checks fail within
  // min(inter, timeout connect) each, so fall 2 takes it out in ~1.5 s.
  fastInter: duration('health-check interval while a server changes state', '250ms'),
  downInter: duration('health-check interval while a server is down', '500ms'),
  fall: help(z.number().int().min(1).max(100), {
    expected: 'failed checks before DOWN (1-100)',
    example: '2',
  }).default(2),
  rise: help(z.number().int().min(1).max(100), {
    expected: 'passed checks before UP (1-100)',
    example: '1',
  }).default(1),
  // A client sent to a server that just died waits this long before `option redispatch` (1 s on a
  // LAN; the seed's 5 s doubled an unplanned failover's write gap for a client that hit it).
  timeoutConnect: duration('timeout connect', '1s'),
  timeoutClient: duration('timeout client (idle client connection)', '30m'),
  timeoutServer: duration('timeout server (idle server connection)', '30m'),
  timeoutCheck: duration('timeout check (one health check)', '2s'),
  maxconn: help(z.number().int().min(1), {
    expected: 'maximum connections per frontend',
    example: '1000',
  }).default(1000),
  writeHold: holdDuration(),
  writeQueue: duration(
    'timeout queue of the write backend: how long a connection waits for a free PostgreSQL slot',
    '30s',
  ),
});

const SecretsSchema = z.strictObject({
  superuserPassword: secretRef('file:/var/lib/pgha/secrets/<cluster>/superuser-password'),
  replicationPassword: secretRef('file:/var/lib/pgha/secrets/<cluster>/replication-password'),
  restApiPassword: secretRef('file:/var/lib/pgha/secrets/<cluster>/restapi-password'),
  haproxyStatsPassword: secretRef('file:/var/lib/pgha/secrets/<cluster>/haproxy-stats-password'),
  /** The `barman` role (backups over a normal connection); required with a backup CT. */
  barmanPassword: secretRef('file:/var/lib/pgha/secrets/<cluster>/barman-password').optional(),
  /** The `streaming_barman` replication role (WAL streaming, base backups); required with a backup CT. */
  streamingBarmanPassword: secretRef(
    'file:/var/lib/pgha/secrets/<cluster>/streaming-barman-password',
  ).optional(),
});

/**
 * The optional backup CT (nodes.backup): Barman, its storage and its PostgreSQL roles. Defaults
 * fit the lab; a cluster without nodes.backup ignores this section.
 */
const BackupSchema = z.strictObject({
  storage: z
    .strictObject({
      /**
       * A directory on the Proxmox host mounted into the backup CT at `path` (`pct set <vmid>
       * -mp<mountPoint> <hostDir>,mp=<path>`). Without it, `path` must already be storage of the CT.
       */
      hostDir: absPath('the Proxmox host directory holding the backups', '/srv/pgha-backup/lab').optional(),
      path: absPath(
        "where the backup storage appears in the backup CT (Barman's barman_home)",
        '/var/lib/barman',
      ).default('/var/lib/barman'),
      mountPoint: help(z.number().int().min(0).max(255), {
        expected: 'the Proxmox mount point index N of mpN (0-255)',
        example: '0',
      }).default(0),
    })
    .prefault({}),
  install: z
    .strictObject({
      method: z.literal('offline'),
      /** Barman's wheels with their dependencies (the lab mounts them read-only here). */
      dir: absPath("the directory of Barman's wheels inside the backup CT", '/opt/pgha-barman').default(
        '/opt/pgha-barman',
      ),
      venv: absPath('the Barman virtualenv', '/opt/barman').default('/opt/barman'),
    })
    .prefault({ method: 'offline' }),
  osUser: unixUser('the OS user Barman runs as', 'barman'),
  user: roleName('the role Barman connects with (conninfo)', 'barman'),
  streamingUser: roleName(
    "the replication role of Barman's WAL streaming and base backups",
    'streaming_barman',
  ),
  /**
   * Barman's server name (default: the cluster name). `pgha upgrade postgresql --major` moves a
   * cluster to `<cluster>-pg<major>` (WAL of two majors does not mix in one archive) and says so.
   */
  server: help(
    z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, { message: 'a Barman server name: lowercase letters, digits, -' }),
    { expected: 'a Barman server name: lowercase letters, digits and - (at most 63)', example: 'lab-pg18' },
  ).optional(),
  slot: help(
    z.string().regex(/^[a-z0-9_]{1,63}$/, { message: 'a replication slot name: a-z, 0-9, _ (at most 63)' }),
    { expected: 'a replication slot name: lowercase letters, digits and _ (at most 63)', example: 'barman' },
  ).default('barman'),
  /**
   * Barman's WAL receiver as the synchronous standby (zero RPO): every commit waits until the
   * backup CT has flushed its WAL. `synchronous_standby_names` names it on every member
   * (postgresql.auto.conf: Patroni owns the parameter in its own files), so it holds on whichever
   * member leads. Writes stop while the receiver is down (pgha deploy --synchronous).
   */
  synchronous: help(z.boolean(), {
    expected: 'true (Barman receives WAL synchronously: zero RPO) or false (asynchronously)',
    example: 'false',
  }).default(false),
});

const ProxmoxSchema = z.strictObject({
  host: help(
    grammar(
      z.string(),
      (v) =>
        v.startsWith('-')
          ? 'a value starting with - (ssh would read it as an option)'
          : isHostOrIp(v)
            ? undefined
            : 'neither a host name nor an IPv4 address',
      'the Proxmox host: a host name or an IPv4 address',
      "write the host's address or DNS name, like host: 10.213.50.1",
    ),
    { expected: 'the Proxmox host: a host name or an IPv4 address', example: '10.213.50.1' },
  ),
  port: port('SSH port of the Proxmox host', 22),
  user: unixUser('the SSH user on the Proxmox host', 'root', true),
  privateKey: secretRef('file:/root/.ssh/id_ed25519'),
  hostKeyFingerprint: help(
    grammar(
      z.string(),
      (v) =>
        FINGERPRINT.test(v)
          ? undefined
          : v.startsWith('env:') || v.startsWith('file:')
            ? secretRefProblem(v)
            : 'not an OpenSSH SHA256 fingerprint',
      'an OpenSSH fingerprint SHA256:<43 base64 characters> (ssh-keygen -lf), or an env:/file: reference to one',
      'write SHA256:<43 base64 characters> as ssh-keygen -lf prints it for the host key, or file:/path/to/a/file/holding/it',
    ),
    {
      expected:
        'an OpenSSH fingerprint SHA256:<43 base64 characters> (ssh-keygen -lf), or an env:/file: reference to one',
      example: 'SHA256:...',
    },
  ),
});

export const InventoryInputSchema = z.strictObject({
  cluster: help(
    z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,40}$/, { message: 'a cluster name: lowercase letters, digits, -' }),
    {
      expected: 'a cluster name: lowercase letters, digits and - (used in workflow ids)',
      example: 'lab',
    },
  ),
  subnet: help(z.string(), {
    expected: 'the cluster subnet as a CIDR, e.g. 10.213.50.0/24',
    example: '10.213.50.0/24',
  }),
  proxmox: ProxmoxSchema,
  nodes: z.strictObject({
    haproxy: z.array(NodeSchema),
    postgres: z.array(NodeSchema),
    etcd: z.array(NodeSchema),
    /** Optional: the backup CT running Barman (at most one). */
    backup: z.array(NodeSchema).max(1, { message: 'at most one backup CT' }).default([]),
  }),
  versions: z.strictObject({
    postgresql: version('postgresql', '18.4'),
    patroni: version('patroni', '3.3.0'),
    etcd: version('etcd', '3.5.13'),
    /** Optional: the HAProxy the install brings (informational; checked for its shape). */
    haproxy: version('haproxy', '2.6.12').optional(),
  }),
  install: InstallSchema,
  ports: PortsSchema.prefault({}),
  patroni: PatroniSchema.prefault({}),
  postgresql: PostgresqlSchema.prefault({}),
  etcd: EtcdSchema.prefault({}),
  haproxy: HaproxySchema.prefault({}),
  backup: BackupSchema.prefault({}),
  /** deployCluster starts the cluster's guardian (workflows/guardian.ts) as its last step; off by default. */
  guardian: help(z.boolean(), {
    expected:
      'true or false (true: pgha deploy ends by starting the failover guardian, as pgha guard start; a running one is kept)',
    example: 'true',
  }).default(false),
  /**
   * Optional: where pgha tells people what its runbooks do (started, approval needed, paused,
   * completed, refused, failed). The webhook URL is a secret (a Slack webhook's path is its key): a
   * reference only, resolved by the notify activity.
   */
  notify: z
    .strictObject({
      webhook: help(grammar(z.string(), refProblem, webhookRefExpected, webhookRefFix, true), {
        expected: webhookRefExpected,
        example: 'file:/var/lib/pgha/secrets/<cluster>/webhook-url',
        secret: true,
      }),
    })
    .optional(),
  secrets: SecretsSchema,
});

export type InventoryInput = z.input<typeof InventoryInputSchema>;
type Parsed = z.output<typeof InventoryInputSchema>;

export type Node = z.output<typeof NodeSchema>;
export type Role = 'haproxy' | 'postgres' | 'etcd';
export type SecretName = keyof Parsed['secrets'];
/** The secrets every cluster has. */
export type CoreSecretName =
  'superuserPassword' | 'replicationPassword' | 'restApiPassword' | 'haproxyStatsPassword';
/** The secrets of the backup CT's roles: present (and required) only with nodes.backup. */
export type BackupSecretName = Exclude<SecretName, CoreSecretName>;
export const SECRET_NAMES: readonly CoreSecretName[] = [
  'superuserPassword',
  'replicationPassword',
  'restApiPassword',
  'haproxyStatsPassword',
];
export const BACKUP_SECRET_NAMES: readonly BackupSecretName[] = ['barmanPassword', 'streamingBarmanPassword'];

/** The secrets this inventory has: the core ones, and the backup ones it sets. */
export function secretNamesOf(inv: { secrets: Partial<Record<SecretName, string>> }): SecretName[] {
  return [...SECRET_NAMES, ...BACKUP_SECRET_NAMES.filter((n) => inv.secrets[n] !== undefined)];
}

/** A validated inventory with every default filled in (derived paths included). */
export interface Inventory extends Omit<Parsed, 'postgresql' | 'etcd' | 'patroni'> {
  patroni: Omit<Parsed['patroni'], 'timing' | 'ttl' | 'loopWait' | 'retryTimeout'> & {
    /** The timing profile (runbooks/timing.ts) and the values it gives (explicit ones for custom). */
    timing: TimingName;
    ttl: number;
    loopWait: number;
    retryTimeout: number;
    /** The patroni executable: <venv>/bin/patroni, or /usr/local/bin/patroni for a system pip install. */
    executable: string;
    /** patronictl next to it. */
    ctlExecutable: string;
  };
  postgresql: Omit<Parsed['postgresql'], 'dataDir' | 'binDir' | 'allowedNetworks'> & {
    /** From versions.postgresql, e.g. 18. */
    major: number;
    dataDir: string;
    binDir: string;
    allowedNetworks: string[];
  };
  etcd: Omit<Parsed['etcd'], 'binDir'> & { binDir: string };
}

/** The resolved values of secrets: given to renderers and activities, never stored in an inventory. */
export type ClusterSecrets = Record<CoreSecretName, string> & Partial<Record<BackupSecretName, string>>;

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

function normalizePosix(p: string): string {
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return `/${out.join('/')}`;
}

/** `file:relative/path` → `file:/baseDir/relative/path`; other references unchanged. */
export function absolutizeRef(ref: string, baseDir: string): string {
  if (!ref.startsWith('file:')) return ref;
  const p = ref.slice(5);
  return `file:${normalizePosix(p.startsWith('/') ? p : `${baseDir}/${p}`)}`;
}

export interface ValidateOptions {
  /** Absolute directory of the inventory file: relative `file:` references are resolved against it. */
  baseDir?: string;
}

export interface ValidationResult {
  /** Present when there is no error (warnings allowed). */
  inventory?: Inventory;
  issues: InventoryIssue[];
}

/** Validate a parsed YAML/JSON document. Never throws for bad input: every problem is an issue. */
export function validateInventory(raw: unknown, opts: ValidateOptions = {}): ValidationResult {
  const issues: InventoryIssue[] = [];
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    issues.push({
      path: '',
      // A scalar document is not shown: a file holding only a password is a likely mistake.
      found:
        raw === null || raw === undefined || Array.isArray(raw)
          ? describe(raw)
          : `a ${typeof raw} (not shown)`,
      expected: 'a mapping with cluster, subnet, proxmox, nodes, versions, install, secrets',
      fix: 'start from runbooks/clusters/lab.yaml',
      severity: 'error',
    });
    return { issues };
  }
  // Control characters first: a field that holds one is reported once, for that (zod's own complaint
  // about the same field would only repeat it less clearly).
  const control = controlCharIssues(raw);
  issues.push(...control);
  const controlled = new Set(control.map((i) => i.path));
  const parsed = InventoryInputSchema.safeParse(raw);
  if (!parsed.success)
    for (const iss of parsed.error.issues)
      issues.push(...zodIssueToIssues(iss, raw, InventoryInputSchema).filter((i) => !controlled.has(i.path)));
  crossCheck(raw, issues);

  // Relative file: references need a base directory.
  const refFields: [string, unknown][] = [
    ['proxmox.privateKey', (raw as { proxmox?: { privateKey?: unknown } }).proxmox?.privateKey],
    [
      'proxmox.hostKeyFingerprint',
      (raw as { proxmox?: { hostKeyFingerprint?: unknown } }).proxmox?.hostKeyFingerprint,
    ],
    ['notify.webhook', (raw as { notify?: { webhook?: unknown } }).notify?.webhook],
    ...[...SECRET_NAMES, ...BACKUP_SECRET_NAMES].map((n): [string, unknown] => [
      `secrets.${n}`,
      (raw as { secrets?: Record<string, unknown> }).secrets?.[n],
    ]),
  ];
  if (!opts.baseDir)
    for (const [p, v] of refFields)
      if (typeof v === 'string' && v.startsWith('file:') && !v.startsWith('file:/'))
        issues.push({
          path: p,
          found: 'a relative file: reference',
          expected: 'an absolute file: path (no inventory file to resolve it against)',
          fix: 'write file:/absolute/path, or load the inventory from a file',
          severity: 'error',
        });

  dedupe(issues);
  if (!parsed.success || issues.some((i) => i.severity === 'error')) return { issues };
  return { inventory: finalize(parsed.data, opts), issues };
}

function dedupe(issues: InventoryIssue[]): void {
  const seen = new Set<string>();
  for (let i = 0; i < issues.length; i++) {
    const k = `${issues[i]!.path}\n${issues[i]!.expected}`;
    if (seen.has(k)) issues.splice(i--, 1);
    else seen.add(k);
  }
}

function finalize(p: Parsed, opts: ValidateOptions): Inventory {
  const major = Number(p.versions.postgresql.split('.')[0]);
  const abs = (r: string) => (opts.baseDir ? absolutizeRef(r, opts.baseDir) : r);
  const venv = p.install.patroni.venv;
  const binDirOfPatroni = venv ? `${venv}/bin` : '/usr/local/bin';
  return {
    ...p,
    proxmox: {
      ...p.proxmox,
      privateKey: abs(p.proxmox.privateKey),
      hostKeyFingerprint: abs(p.proxmox.hostKeyFingerprint),
    },
    secrets: {
      superuserPassword: abs(p.secrets.superuserPassword),
      replicationPassword: abs(p.secrets.replicationPassword),
      restApiPassword: abs(p.secrets.restApiPassword),
      haproxyStatsPassword: abs(p.secrets.haproxyStatsPassword),
      ...(p.secrets.barmanPassword ? { barmanPassword: abs(p.secrets.barmanPassword) } : {}),
      ...(p.secrets.streamingBarmanPassword
        ? { streamingBarmanPassword: abs(p.secrets.streamingBarmanPassword) }
        : {}),
    },
    ...(p.notify ? { notify: { webhook: abs(p.notify.webhook) } } : {}),
    patroni: {
      ...p.patroni,
      ...resolveTiming(p.patroni),
      executable: `${binDirOfPatroni}/patroni`,
      ctlExecutable: `${binDirOfPatroni}/patronictl`,
    },
    postgresql: {
      ...p.postgresql,
      major,
      dataDir: p.postgresql.dataDir ?? `/var/lib/pgsql/${major}/data`,
      binDir: p.postgresql.binDir ?? `/usr/pgsql-${major}/bin`,
      allowedNetworks: p.postgresql.allowedNetworks ?? [p.subnet],
    },
    etcd: {
      ...p.etcd,
      binDir: p.etcd.binDir ?? (p.install.etcd.method === 'tarball' ? '/usr/local/bin' : '/usr/bin'),
    },
  };
}

/** Validate or throw an {@link InventoryError} listing every error. */
export function parseInventory(raw: unknown, opts: ValidateOptions = {}): Inventory {
  const r = validateInventory(raw, opts);
  if (!r.inventory) throw new InventoryError(r.issues);
  return r.inventory;
}

// ---------------------------------------------------------------------------------------------
// Small helpers every runbook needs
// ---------------------------------------------------------------------------------------------

/** All nodes with their role, in the seed's order: HAProxy, PostgreSQL, etcd. */
export function allNodes(inv: Inventory): (Node & { role: Role })[] {
  return ROLES.flatMap((role) => inv.nodes[role].map((n) => ({ ...n, role })));
}
