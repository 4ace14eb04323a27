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

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

/** Field help carried on a schema: read back by the error formatter. */
interface FieldHelp {
  expected: string;
  example?: string;
  secret?: boolean;
}

function help<T extends z.ZodType>(schema: T, h: FieldHelp): T {
  return schema.meta({ pghaHelp: h }) as T;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const SECRET_REF = /^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$/;
/** OpenSSH's SHA256 fingerprint: `SHA256:` + 43 characters of unpadded base64 (ssh-keygen -lf). */
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;
/** HAProxy time format: a number with an optional unit (us, ms, s, m, h, d); we require a unit. */
const DURATION = /^\d+(us|ms|s|m|h|d)$/;

/** PostgreSQL majors pgha knows how to configure (their paths, parameters and Patroni support). */
export const KNOWN_POSTGRES_MAJORS = [13, 14, 15, 16, 17, 18] as const;

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

const secretRef = (example: string) =>
  help(z.string().regex(SECRET_REF, { message: secretRefMessage }), {
    expected: secretRefMessage,
    example,
    secret: true,
  });

const seconds = (what: string, dflt: number) =>
  help(
    z
      .number()
      .int({ message: `a whole number of seconds (${what})` })
      .min(1, { message: `a positive number of seconds (${what})` }),
    { expected: `a whole number of seconds (${what})`, example: String(dflt) },
  ).default(dflt);

const duration = (what: string, dflt: string) =>
  help(z.string().regex(DURATION, { message: `a duration with a unit, e.g. 500ms, 1s, 30m (${what})` }), {
    expected: `a duration with a unit, e.g. 500ms, 1s, 30m (${what})`,
    example: dflt,
  }).default(dflt);

const absPath = (what: string, example: string) =>
  help(z.string().regex(/^\/\S*$/, { message: `an absolute path (${what})` }), {
    expected: `an absolute path (${what})`,
    example,
  });

const version = (what: string, example: string) =>
  help(z.string().regex(/^\d+\.\d+(\.\d+)?$/, { message: `a version "X.Y" or "X.Y.Z" (${what})` }), {
    expected: `a quoted version string "X.Y" or "X.Y.Z" (${what}); YAML reads an unquoted 18.10 as 18.1`,
    example: example,
  });

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
    repoRpm: help(z.string().url(), {
      expected: 'the URL of the PGDG repository RPM',
      example: 'https://...',
    }).default(
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
    baseUrl: help(z.string().url(), {
      expected: 'the release download base URL',
      example: 'https://github.com/etcd-io/etcd/releases/download',
    }).default('https://github.com/etcd-io/etcd/releases/download'),
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
  scope: help(z.string().regex(/^[A-Za-z0-9_.-]+$/, { message: 'a cluster scope: letters, digits, _ . -' }), {
    expected: 'a cluster scope: letters, digits, _ . -',
    example: 'postgres',
  }).default('postgres'),
  namespace: help(
    z.string().regex(/^\/([A-Za-z0-9_.-]+\/)*$/, { message: 'an etcd key prefix like /patroni/' }),
    {
      expected: 'an etcd key prefix that starts and ends with / (e.g. /patroni/)',
      example: '/patroni/',
    },
  ).default('/patroni/'),
  ttl: seconds('leader key TTL, Patroni bootstrap.dcs.ttl', 60),
  loopWait: seconds('Patroni loop interval, bootstrap.dcs.loop_wait', 10),
  retryTimeout: seconds('DCS/PostgreSQL retry timeout, bootstrap.dcs.retry_timeout', 20),
  maximumLagOnFailover: help(z.number().int().min(0), {
    expected: 'bytes of WAL a replica may lag and still be promoted (bootstrap.dcs.maximum_lag_on_failover)',
    example: '1048576',
  }).default(1048576),
  useRewind: z.boolean().default(true),
  useSlots: z.boolean().default(true),
  configDir: absPath('directory of patroni.yml', '/etc/patroni').default('/etc/patroni'),
  /** User name for the REST API's unsafe endpoints (the password is secrets.restApiPassword). */
  restApiUsername: help(z.string().regex(/^[A-Za-z0-9_.-]+$/), {
    expected: 'a user name for the Patroni REST API',
    example: 'patroni',
  }).default('patroni'),
});

const ParamValue = z.union([z.string(), z.number(), z.boolean()]);

const PostgresqlSchema = z.strictObject({
  /** Defaults to /var/lib/pgsql/<major>/data (the seed's PGDG layout). */
  dataDir: absPath('PostgreSQL data directory', '/var/lib/pgsql/18/data').optional(),
  /** Defaults to /usr/pgsql-<major>/bin. Must name the same major as versions.postgresql. */
  binDir: absPath('PostgreSQL binaries directory', '/usr/pgsql-18/bin').optional(),
  /** Home of the postgres OS user (PGDG: /var/lib/pgsql); holds .pgpass. */
  home: absPath("the postgres OS user's home", '/var/lib/pgsql').default('/var/lib/pgsql'),
  osUser: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]*$/)
    .default('postgres'),
  superuser: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .default('postgres'),
  replicationUser: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .default('replicator'),
  /** Networks allowed in pg_hba (besides local); defaults to [subnet]. The seed's postgresql_allowed_networks. */
  allowedNetworks: z
    .array(help(z.string(), { expected: 'a CIDR like 10.213.50.0/24', example: '10.213.50.0/24' }))
    .optional(),
  encoding: z.string().default('UTF8'),
  dataChecksums: z.boolean().default(true),
  /** Cluster-wide parameters (Patroni bootstrap.dcs.postgresql.parameters). */
  parameters: z.record(z.string().regex(/^[a-z_][a-z0-9_.]*$/), ParamValue).default({}),
});

const EtcdSchema = z.strictObject({
  dataDir: absPath('etcd data directory', '/var/lib/etcd').default('/var/lib/etcd'),
  clusterToken: z.string().min(1).default('patroni-cluster-token'),
  /** Defaults by install method: tarball → /usr/local/bin (the seed), offline .deb → /usr/bin. */
  binDir: absPath('directory of etcd and etcdctl', '/usr/local/bin').optional(),
  user: z.string().default('etcd'),
});

const HaproxySchema = z.strictObject({
  statsUser: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/)
    .default('admin'),
  checkInter: duration('health-check interval while the state is stable', '1s'),
  fastInter: duration('health-check interval while a server changes state', '500ms'),
  downInter: duration('health-check interval while a server is down', '2s'),
  fall: help(z.number().int().min(1).max(100), {
    expected: 'failed checks before DOWN (1-100)',
    example: '2',
  }).default(2),
  rise: help(z.number().int().min(1).max(100), {
    expected: 'passed checks before UP (1-100)',
    example: '1',
  }).default(1),
  timeoutConnect: duration('timeout connect', '5s'),
  timeoutClient: duration('timeout client (idle client connection)', '30m'),
  timeoutServer: duration('timeout server (idle server connection)', '30m'),
  timeoutCheck: duration('timeout check (one health check)', '2s'),
  maxconn: help(z.number().int().min(1), {
    expected: 'maximum connections per frontend',
    example: '1000',
  }).default(1000),
});

const SecretsSchema = z.strictObject({
  superuserPassword: secretRef('file:/var/lib/pgha/secrets/<cluster>/superuser-password'),
  replicationPassword: secretRef('file:/var/lib/pgha/secrets/<cluster>/replication-password'),
  restApiPassword: secretRef('file:/var/lib/pgha/secrets/<cluster>/restapi-password'),
  haproxyStatsPassword: secretRef('file:/var/lib/pgha/secrets/<cluster>/haproxy-stats-password'),
});

const ProxmoxSchema = z.strictObject({
  host: help(z.string().min(1), { expected: 'the Proxmox host address', example: '10.213.50.1' }),
  port: port('SSH port of the Proxmox host', 22),
  user: z.string().min(1).default('root'),
  privateKey: secretRef('file:/root/.ssh/id_ed25519'),
  hostKeyFingerprint: help(
    z.string().refine((v) => FINGERPRINT.test(v) || SECRET_REF.test(v), {
      message:
        'an OpenSSH fingerprint SHA256:<43 base64 characters> (ssh-keygen -lf), or env:/file: reference to one',
    }),
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
  }),
  versions: z.strictObject({
    postgresql: version('PostgreSQL major.minor', '18.1'),
    patroni: version('Patroni', '3.3.0'),
    etcd: version('etcd', '3.5.13'),
  }),
  install: InstallSchema,
  ports: PortsSchema.prefault({}),
  patroni: PatroniSchema.prefault({}),
  postgresql: PostgresqlSchema.prefault({}),
  etcd: EtcdSchema.prefault({}),
  haproxy: HaproxySchema.prefault({}),
  secrets: SecretsSchema,
});

export type InventoryInput = z.input<typeof InventoryInputSchema>;
type Parsed = z.output<typeof InventoryInputSchema>;

export type Node = z.output<typeof NodeSchema>;
export type Role = 'haproxy' | 'postgres' | 'etcd';
export type SecretRef = `env:${string}` | `file:${string}`;
export type SecretName = keyof Parsed['secrets'];
export const SECRET_NAMES: readonly SecretName[] = [
  'superuserPassword',
  'replicationPassword',
  'restApiPassword',
  'haproxyStatsPassword',
];

/** A validated inventory with every default filled in (derived paths included). */
export interface Inventory extends Omit<Parsed, 'postgresql' | 'etcd' | 'patroni'> {
  patroni: Parsed['patroni'] & {
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
export type ClusterSecrets = Record<SecretName, string>;

// ---------------------------------------------------------------------------------------------
// Issues
// ---------------------------------------------------------------------------------------------

export interface InventoryIssue {
  /** `nodes.etcd[1].ip`; empty for the document itself. */
  path: string;
  found: string;
  expected: string;
  fix: string;
  severity: 'error' | 'warning';
}

export function formatIssue(i: InventoryIssue, where?: (path: string) => string | undefined): string {
  const loc = where?.(i.path);
  const head = `${i.path || '(document)'}${loc ? ` (${loc})` : ''}`;
  return `${i.severity === 'warning' ? 'warning: ' : ''}${head}: found ${i.found}; expected ${i.expected}. Fix: ${i.fix}`;
}

export class InventoryError extends Error {
  override readonly name = 'InventoryError';
  constructor(
    readonly issues: InventoryIssue[],
    readonly source?: string,
    where?: (path: string) => string | undefined,
  ) {
    const errors = issues.filter((i) => i.severity === 'error');
    super(
      `${source ? `${source}: ` : ''}${errors.length} problem${errors.length === 1 ? '' : 's'} in the inventory:\n` +
        errors.map((i) => `  - ${formatIssue(i, where)}`).join('\n'),
    );
  }
}

export type PathSeg = string | number;

export function pathToString(path: readonly PathSeg[]): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else s += s === '' ? seg : `.${seg}`;
  }
  return s;
}

function getAt(root: unknown, path: readonly PathSeg[]): unknown {
  let cur: unknown = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

function describe(v: unknown, secret = false): string {
  if (v === undefined) return 'nothing (the field is missing)';
  if (v === null) return 'null (an empty value)';
  if (secret && typeof v === 'string') return `a literal value of ${v.length} characters (not shown)`;
  if (typeof v === 'string') return `"${v.length > 60 ? `${v.slice(0, 57)}...` : v}" (a string)`;
  if (typeof v === 'number') return `${v} (a number)`;
  if (typeof v === 'boolean') return `${v} (a boolean)`;
  if (Array.isArray(v)) return `a list of ${v.length}`;
  return 'a mapping';
}

// --- walking the schema (to name known keys and read field help) ---

interface ZodInternals {
  _zod: { def: Record<string, unknown> & { type: string } };
  meta(): Record<string, unknown> | undefined;
}

function internals(s: unknown): ZodInternals {
  return s as ZodInternals;
}

function helpOf(s: unknown): FieldHelp | undefined {
  let cur: unknown = s;
  for (let i = 0; i < 8 && cur; i++) {
    const m = internals(cur).meta?.();
    if (m && typeof m === 'object' && 'pghaHelp' in m) return m.pghaHelp as FieldHelp;
    const def = internals(cur)._zod.def;
    cur = def.innerType ?? (def.type === 'pipe' ? def.in : undefined);
  }
  return undefined;
}

function unwrap(s: unknown): unknown {
  let cur: unknown = s;
  for (let i = 0; i < 8 && cur; i++) {
    const def = internals(cur)._zod.def;
    if (def.innerType) cur = def.innerType;
    else if (def.type === 'pipe') cur = def.in;
    else break;
  }
  return cur;
}

/** The schema at `path`, choosing discriminated-union options by the raw data's discriminator. */
function schemaAt(root: unknown, raw: unknown, path: readonly PathSeg[]): unknown {
  let cur: unknown = root;
  for (let i = 0; i < path.length; i++) {
    cur = unwrap(cur);
    if (!cur) return undefined;
    let def = internals(cur)._zod.def;
    if (def.type === 'union') {
      const disc = def.discriminator as string | undefined;
      const rawHere = getAt(raw, path.slice(0, i)) as Record<string, unknown> | undefined;
      const options = def.options as unknown[];
      const chosen =
        options.find((o) => {
          const sh = (internals(unwrap(o))._zod.def.shape ?? {}) as Record<string, unknown>;
          const lit = sh[disc ?? ''] ? internals(sh[disc ?? ''])._zod.def : undefined;
          return lit && (lit.values as unknown[] | undefined)?.includes(rawHere?.[disc ?? '']);
        }) ?? options[0];
      cur = unwrap(chosen);
      def = internals(cur)._zod.def;
    }
    const seg = path[i]!;
    if (def.type === 'object') cur = (def.shape as Record<string, unknown>)[String(seg)];
    else if (def.type === 'array') cur = def.element;
    else if (def.type === 'record') cur = def.valueType;
    else return undefined;
  }
  return cur;
}

function knownKeys(root: unknown, raw: unknown, path: readonly PathSeg[]): string[] {
  let s = unwrap(schemaAt(root, raw, path));
  if (!s) return [];
  let def = internals(s)._zod.def;
  if (def.type === 'union') {
    const disc = def.discriminator as string | undefined;
    const rawHere = getAt(raw, path) as Record<string, unknown> | undefined;
    const options = def.options as unknown[];
    s =
      unwrap(
        options.find((o) => {
          const sh = (internals(unwrap(o))._zod.def.shape ?? {}) as Record<string, unknown>;
          const lit = sh[disc ?? ''] ? internals(sh[disc ?? ''])._zod.def : undefined;
          return lit && (lit.values as unknown[] | undefined)?.includes(rawHere?.[disc ?? '']);
        }),
      ) ?? unwrap(options[0]);
    def = internals(s)._zod.def;
  }
  return def.type === 'object' ? Object.keys(def.shape as object) : [];
}

function editDistance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length]!;
}

/** The closest known key, when it is close enough to be a likely typo (or a snake_case spelling). */
export function didYouMean(key: string, known: readonly string[]): string | undefined {
  const camel = key.replace(/[_-]([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = Math.min(editDistance(key, k), editDistance(camel, k));
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 4)) ? best : undefined;
}

/** How to write the field, e.g. `set ports.etcdClient to a TCP port (e.g. etcdClient: 2379)`. */
function setTo(path: readonly PathSeg[], expected: string, example: string | undefined): string {
  const key = path[path.length - 1];
  const p = pathToString(path);
  if (example === undefined || typeof key !== 'string') return `set ${p} to ${expected}`;
  const ex = path[0] === 'versions' ? `"${example}"` : example;
  return `set ${p} to ${(expected.split(' (')[0] ?? expected).replace(/, e\.g\..*$/, '')}, like ${key}: ${ex}`;
}

function zodIssueToIssues(iss: z.core.$ZodIssue, raw: unknown): InventoryIssue[] {
  const path = iss.path as PathSeg[];
  const field = schemaAt(InventoryInputSchema, raw, path);
  const h = helpOf(field);
  const secret = h?.secret === true;
  const value = getAt(raw, path);
  const p = pathToString(path);
  switch (iss.code) {
    case 'unrecognized_keys': {
      const known = knownKeys(InventoryInputSchema, raw, path);
      return iss.keys.map((key) => {
        const guess = didYouMean(key, known);
        return {
          path: pathToString([...path, key]),
          found: `an unknown key "${key}"`,
          expected: known.length ? `one of: ${known.join(', ')}` : 'no other keys here',
          fix: guess
            ? `did you mean "${guess}"? Rename the key (inventory keys are camelCase)`
            : `remove "${key}" (inventory keys are camelCase)`,
          severity: 'error' as const,
        };
      });
    }
    case 'invalid_union': {
      if ('discriminator' in iss && typeof iss.discriminator === 'string') {
        const opts = ((iss as { options?: unknown[] }).options ?? []).map(String);
        return [
          {
            path: p,
            found: describe(value),
            expected: `one of: ${opts.join(', ')}`,
            fix: `set ${p} to one of ${opts.map((o) => `"${o}"`).join(', ')}`,
            severity: 'error',
          },
        ];
      }
      return [
        {
          path: p,
          found: describe(value),
          expected: h?.expected ?? iss.message,
          fix: `correct ${p}`,
          severity: 'error',
        },
      ];
    }
    case 'invalid_type': {
      const expected = h?.expected ?? `a ${iss.expected}`;
      const isVersion = path[0] === 'versions' && typeof value === 'number';
      const fix =
        value === undefined
          ? `add ${setTo(path, expected, h?.example).replace(/^set /, '')}`
          : isVersion
            ? `quote it: ${String(path[path.length - 1])}: "${String(value)}"`
            : secret
              ? `write ${p} as env:NAME or file:PATH`
              : setTo(path, expected, h?.example);
      return [{ path: p, found: describe(value, secret), expected, fix, severity: 'error' }];
    }
    default: {
      const expected = h?.expected ?? iss.message;
      const fix = secret
        ? `store the password in a file (mode 0600) and write ${p}: file:/path/to/it (\`pgha secrets init\` creates missing file: secrets), or export it and write ${p}: env:NAME`
        : setTo(path, expected, h?.example);
      return [{ path: p, found: describe(value, secret), expected, fix, severity: 'error' }];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Cross-field checks (run on the raw document, defensively, so every problem shows at once)
// ---------------------------------------------------------------------------------------------

interface Cidr {
  base: number;
  bits: number;
}

function ipToInt(ip: string): number | undefined {
  if (!IPV4.test(ip)) return undefined;
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function parseCidr(s: unknown): Cidr | undefined {
  if (typeof s !== 'string') return undefined;
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const base = ipToInt(m[1]!);
  const bits = Number(m[2]);
  if (base === undefined || bits > 32) return undefined;
  return { base, bits };
}

function cidrMask(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

export function ipInCidr(ip: string, cidr: Cidr): boolean {
  const n = ipToInt(ip);
  if (n === undefined) return false;
  const mask = cidrMask(cidr.bits);
  return (n & mask) >>> 0 === (cidr.base & mask) >>> 0;
}

const ROLES: Role[] = ['haproxy', 'postgres', 'etcd'];

function crossCheck(raw: unknown, out: InventoryIssue[]): void {
  const err = (path: string, found: string, expected: string, fix: string) =>
    out.push({ path, found, expected, fix, severity: 'error' });
  const warn = (path: string, found: string, expected: string, fix: string) =>
    out.push({ path, found, expected, fix, severity: 'warning' });
  if (raw === null || typeof raw !== 'object') return;
  const doc = raw as Record<string, unknown>;

  // subnet
  const cidr = parseCidr(doc.subnet);
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

  // nodes
  const nodes = (doc.nodes && typeof doc.nodes === 'object' ? doc.nodes : {}) as Record<string, unknown>;
  const seenVmid = new Map<number, string>();
  const seenIp = new Map<string, string>();
  const seenHost = new Map<string, string>();
  for (const role of ROLES) {
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
            `"${node.hostname}", already used by ${prev}`,
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
  if (
    install.postgresql?.method === 'offline' &&
    typeof versions.postgresql === 'string' &&
    !/^\d+\.\d+$/.test(versions.postgresql)
  )
    err(
      'versions.postgresql',
      `"${versions.postgresql}"`,
      'major.minor, e.g. "18.4"',
      'write the version as major.minor',
    );

  // Patroni timings: Patroni needs loop_wait + 2 * retry_timeout <= ttl
  const pat = (doc.patroni && typeof doc.patroni === 'object' ? doc.patroni : {}) as Record<string, unknown>;
  const num = (v: unknown, d: number) => (typeof v === 'number' ? v : d);
  const ttl = num(pat.ttl, 60);
  const loopWait = num(pat.loopWait, 10);
  const retryTimeout = num(pat.retryTimeout, 20);
  if (loopWait + 2 * retryTimeout > ttl)
    err(
      'patroni.ttl',
      `ttl ${ttl} with loopWait ${loopWait} and retryTimeout ${retryTimeout}`,
      'ttl >= loopWait + 2 * retryTimeout (otherwise the leader key can expire during a retry)',
      `raise patroni.ttl to ${loopWait + 2 * retryTimeout} or lower loopWait/retryTimeout`,
    );

  const pgNet = (doc.postgresql as Record<string, unknown> | undefined)?.allowedNetworks;
  if (Array.isArray(pgNet))
    pgNet.forEach((n, i) => {
      if (typeof n === 'string' && !parseCidr(n))
        err(
          `postgresql.allowedNetworks[${i}]`,
          describe(n),
          'a CIDR like 10.213.50.0/24',
          'write address/prefix-length',
        );
    });
}

function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

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
      found: describe(raw),
      expected: 'a mapping with cluster, subnet, proxmox, nodes, versions, install, secrets',
      fix: 'start from runbooks/clusters/lab.yaml',
      severity: 'error',
    });
    return { issues };
  }
  const parsed = InventoryInputSchema.safeParse(raw);
  if (!parsed.success) for (const iss of parsed.error.issues) issues.push(...zodIssueToIssues(iss, raw));
  crossCheck(raw, issues);

  // Relative file: references need a base directory.
  const refFields: [string, unknown][] = [
    ['proxmox.privateKey', (raw as { proxmox?: { privateKey?: unknown } }).proxmox?.privateKey],
    [
      'proxmox.hostKeyFingerprint',
      (raw as { proxmox?: { hostKeyFingerprint?: unknown } }).proxmox?.hostKeyFingerprint,
    ],
    ...SECRET_NAMES.map((n): [string, unknown] => [
      `secrets.${n}`,
      (raw as { secrets?: Record<string, unknown> }).secrets?.[n],
    ]),
  ];
  if (!opts.baseDir)
    for (const [p, v] of refFields)
      if (typeof v === 'string' && v.startsWith('file:') && !v.startsWith('file:/'))
        issues.push({
          path: p,
          found: `a relative file reference ${v}`,
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
    },
    patroni: {
      ...p.patroni,
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

/** etcd client URLs, e.g. http://10.213.50.51:2379. */
export function etcdClientUrls(inv: Inventory): string[] {
  return inv.nodes.etcd.map((n) => `http://${n.ip}:${inv.ports.etcdClient}`);
}

/** Patroni REST API base URLs by hostname (member name). */
export function patroniUrls(inv: Inventory): Record<string, string> {
  return Object.fromEntries(
    inv.nodes.postgres.map((n) => [n.hostname, `http://${n.ip}:${inv.ports.patroniRestApi}`]),
  );
}

/** The etcd key prefix of this cluster's Patroni state: `/<namespace>/<scope>/`, e.g. /patroni/postgres/. */
export function patroniKeyPrefix(inv: Inventory): string {
  return `${inv.patroni.namespace.replace(/\/?$/, '/')}${inv.patroni.scope}/`;
}
