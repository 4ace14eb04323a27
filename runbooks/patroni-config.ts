/**
 * What `pgha config set key=value ...` may change, and where each key lives in Patroni's dynamic
 * (DCS) configuration — the document behind GET/PATCH /config:
 *
 *   ttl, loop_wait, retry_timeout, maximum_lag_on_failover, ...   top level
 *   postgresql.use_pg_rewind, postgresql.use_slots                 under postgresql
 *   any other name (work_mem, max_connections, ...)                under postgresql.parameters
 *
 * Keys that only mean something in each node's patroni.yml (listen, data_dir, authentication,
 * restapi, etcd3, tags ...) and the PostgreSQL parameters Patroni sets per node itself
 * (listen_addresses, port, cluster_name, hba_file ...) are refused with where they belong instead.
 * Whether a PostgreSQL parameter exists is asked of the live cluster (pg_settings) by the activity;
 * this module is pure (used by the workflow and the CLI alike).
 *
 * Also here: comparing a requested value with what PostgreSQL reports in pg_settings (units, on/off),
 * so "has every member picked it up" and "is this already set" need no guessing.
 */

import { controlCharProblem, quote } from './grammar';

export type ConfigValue = string | number | boolean;

/** Top-level DCS keys pgha lets an operator change, with their type. */
export const DCS_KEYS: Record<string, 'int' | 'bool'> = {
  ttl: 'int',
  loop_wait: 'int',
  retry_timeout: 'int',
  maximum_lag_on_failover: 'int',
  maximum_lag_on_syncnode: 'int',
  max_timelines_history: 'int',
  primary_start_timeout: 'int',
  primary_stop_timeout: 'int',
  synchronous_mode: 'bool',
  synchronous_mode_strict: 'bool',
  synchronous_node_count: 'int',
  failsafe_mode: 'bool',
  check_timeline: 'bool',
};

/** DCS keys under `postgresql` (not parameters). */
export const DCS_POSTGRESQL_KEYS: Record<string, 'bool'> = {
  use_pg_rewind: 'bool',
  use_slots: 'bool',
};

/**
 * Parameters a hot standby must run at least as high as its primary (PostgreSQL refuses or pauses
 * recovery otherwise); Patroni starts a replica with the higher of the DCS value and the primary's
 * (pg_controldata). Raising them: replicas first. Lowering them: the leader first.
 */
export const HOT_STANDBY_PARAMETERS = [
  'max_connections',
  'max_prepared_transactions',
  'max_locks_per_transaction',
  'max_wal_senders',
  'max_worker_processes',
];

/** Keys of a node's own patroni.yml: not in the DCS, so PATCH /config cannot change them. */
const LOCAL_ONLY: Record<string, string> = {
  name: 'the member name is fixed per node (patroni.yml name)',
  scope: 'the cluster scope is fixed (inventory patroni.scope; a new scope is a new cluster)',
  namespace: 'the DCS namespace is fixed (inventory patroni.namespace)',
  restapi: "the REST API is configured per node in patroni.yml (pgha renders it from the inventory's ports)",
  etcd: 'the DCS endpoints are set per node in patroni.yml (inventory nodes.etcd)',
  etcd3: 'the DCS endpoints are set per node in patroni.yml (inventory nodes.etcd)',
  tags: 'tags are set per node in patroni.yml (e.g. nofailover): edit that node and POST /reload',
  watchdog: 'the watchdog is configured per node in patroni.yml',
  log: 'logging is configured per node in patroni.yml',
  bootstrap: 'bootstrap settings only apply when a cluster is created',
  listen: 'postgresql.listen is per node in patroni.yml (inventory ports.postgresql)',
  connect_address: 'postgresql.connect_address is per node in patroni.yml (inventory nodes.postgres[].ip)',
  data_dir: 'postgresql.data_dir is per node in patroni.yml (inventory postgresql.dataDir)',
  bin_dir: 'postgresql.bin_dir is per node in patroni.yml (inventory postgresql.binDir)',
  config_dir: 'postgresql.config_dir is per node in patroni.yml',
  pgpass: 'postgresql.pgpass is per node in patroni.yml',
  authentication: 'credentials are per node in patroni.yml (inventory secrets)',
  pg_hba: 'pg_hba is rendered per node from the inventory (postgresql.allowedNetworks)',
};

/** PostgreSQL parameters Patroni sets on each node itself; in the DCS they are ignored. */
const PATRONI_OWNED_PARAMETERS: Record<string, string> = {
  listen_addresses: 'Patroni sets it from postgresql.listen in each patroni.yml (inventory ports.postgresql)',
  port: 'Patroni sets it from postgresql.listen in each patroni.yml (inventory ports.postgresql)',
  cluster_name: 'Patroni sets it to the scope',
  hba_file: 'Patroni writes pg_hba.conf itself',
  ident_file: 'Patroni writes pg_ident.conf itself',
  config_file: 'Patroni writes postgresql.conf itself',
  data_directory: 'it is postgresql.data_dir in each patroni.yml (inventory postgresql.dataDir)',
  primary_conninfo: 'Patroni manages replication connections itself',
  primary_slot_name: 'Patroni manages replication slots itself (use_slots)',
  restore_command: 'set it under postgresql.recovery_conf / per node, not as a parameter',
  recovery_target_timeline: 'Patroni manages recovery itself',
  synchronous_standby_names: 'Patroni manages it: use synchronous_mode / synchronous_node_count',
};

export class ConfigKeyError extends Error {
  override readonly name = 'InvalidConfigKey';
}

export interface ConfigChange {
  /** As the operator wrote it: work_mem, ttl, postgresql.use_slots. */
  key: string;
  /** Where it lives in GET /config. */
  path: string[];
  kind: 'dcs' | 'parameter';
  value: ConfigValue;
}

const NAME = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;

function coerce(key: string, raw: ConfigValue, type: 'int' | 'bool'): number | boolean {
  if (type === 'int') {
    const n = typeof raw === 'number' ? raw : /^\d+$/.test(String(raw).trim()) ? Number(raw) : NaN;
    if (!Number.isInteger(n) || n < 0) {
      throw new ConfigKeyError(`${key}=${String(raw)}: ${key} takes a whole number (e.g. ${key}=10)`);
    }
    return n;
  }
  const s = String(raw).trim().toLowerCase();
  if (['true', 'on', 'yes', '1'].includes(s)) return true;
  if (['false', 'off', 'no', '0'].includes(s)) return false;
  throw new ConfigKeyError(`${key}=${String(raw)}: ${key} takes true or false`);
}

/**
 * Where each key goes, with its value typed for the DCS. Throws ConfigKeyError naming the key and
 * the fix for an empty set, a malformed name, a local-only key or a parameter Patroni owns.
 */
export function classifyConfig(set: Record<string, ConfigValue>): ConfigChange[] {
  const entries = Object.entries(set ?? {});
  if (entries.length === 0) {
    throw new ConfigKeyError('nothing to set: give one or more key=value (e.g. work_mem=8MB)');
  }
  return entries.map(([rawKey, value]) => {
    // Control characters first: a value reaches postgresql.conf / the DCS, where a newline would
    // start a directive of its own. Shown escaped, never raw.
    const keyProblem = controlCharProblem(rawKey);
    if (keyProblem) throw new ConfigKeyError(`${quote(rawKey)}: the key is ${keyProblem}; remove it`);
    if (typeof value === 'string') {
      const valueProblem = controlCharProblem(value);
      if (valueProblem)
        throw new ConfigKeyError(
          `${rawKey.trim()}=${quote(value)}: ${valueProblem}; a parameter value is one line of printable text`,
        );
    }
    const key = rawKey.trim();
    if (value === undefined || value === null || String(value).trim() === '') {
      throw new ConfigKeyError(`${key}: empty value; write ${key}=<value>`);
    }
    if (key in DCS_KEYS) {
      return { key, path: [key], kind: 'dcs', value: coerce(key, value, DCS_KEYS[key]!) } as ConfigChange;
    }
    let name = key;
    if (key.startsWith('postgresql.parameters.')) name = key.slice('postgresql.parameters.'.length);
    else if (key.startsWith('postgresql.')) {
      const sub = key.slice('postgresql.'.length);
      if (sub in DCS_POSTGRESQL_KEYS) {
        return {
          key,
          path: ['postgresql', sub],
          kind: 'dcs',
          value: coerce(key, value, DCS_POSTGRESQL_KEYS[sub]!),
        } as ConfigChange;
      }
      if (sub in LOCAL_ONLY) {
        throw new ConfigKeyError(`${key} is not a dynamic (DCS) setting: ${LOCAL_ONLY[sub]}`);
      }
      throw new ConfigKeyError(
        `${key} is not a DCS key under postgresql (those are ${Object.keys(DCS_POSTGRESQL_KEYS).join(', ')}); ` +
          `for a PostgreSQL parameter write its bare name, e.g. work_mem=8MB`,
      );
    }
    if (name in DCS_POSTGRESQL_KEYS && name === key) {
      throw new ConfigKeyError(`${key} lives under postgresql: write postgresql.${key}=${String(value)}`);
    }
    if (key in LOCAL_ONLY) {
      throw new ConfigKeyError(`${key} is not a dynamic (DCS) setting: ${LOCAL_ONLY[key]}`);
    }
    if (!NAME.test(name)) {
      throw new ConfigKeyError(
        `${JSON.stringify(key)} is not a PostgreSQL parameter name (lowercase letters, digits, _), ` +
          `nor a DCS key (${Object.keys(DCS_KEYS).join(', ')})`,
      );
    }
    if (name in PATRONI_OWNED_PARAMETERS) {
      throw new ConfigKeyError(`${name} cannot be set cluster-wide: ${PATRONI_OWNED_PARAMETERS[name]}`);
    }
    const v = typeof value === 'string' ? value.trim() : value;
    return { key, path: ['postgresql', 'parameters', name], kind: 'parameter', value: v };
  });
}

/** The value at `path` in a GET /config document. */
export function getPath(doc: unknown, path: string[]): unknown {
  let cur: unknown = doc;
  for (const p of path) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

/** The PATCH /config body that sets these changes (nested objects merge in Patroni). */
export function patchBody(changes: ConfigChange[]): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const c of changes) {
    let cur = body;
    c.path.slice(0, -1).forEach((p) => {
      cur[p] ??= {};
      cur = cur[p] as Record<string, unknown>;
    });
    cur[c.path[c.path.length - 1]!] = c.value;
  }
  return body;
}

// ---------------------------------------------------------------------------------------------
// Values as PostgreSQL understands them

/** One row of pg_settings, as the activity reads it. */
export interface PgSettingInfo {
  name: string;
  setting: string;
  unit: string | null;
  vartype: 'bool' | 'enum' | 'integer' | 'real' | 'string';
  /** postmaster = needs a restart; sighup/superuser/user/... = a reload is enough. */
  context: string;
  enumvals: string[] | null;
  min_val: string | null;
  max_val: string | null;
  pending_restart: boolean;
}

const MEMORY: Record<string, number> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
const TIME: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** The size of pg_settings' unit ("8kB" → 8192 bytes, "ms" → 1 ms), and which scale it belongs to. */
function unitScale(unit: string | null): { scale: Record<string, number>; factor: number } | null {
  if (!unit) return null;
  const m = /^(\d+)?\s*([a-zA-Z]+)$/.exec(unit);
  if (!m) return null;
  const mult = m[1] ? Number(m[1]) : 1;
  const u = m[2]!;
  if (u in MEMORY) return { scale: MEMORY, factor: mult * MEMORY[u]! };
  if (u in TIME) return { scale: TIME, factor: mult * TIME[u]! };
  return null;
}

/**
 * A value written for parameter `info` in the canonical form pg_settings.setting would show, or an
 * error naming what is wrong with it (unknown enum value, not a number, out of range).
 */
export function canonicalSetting(
  info: PgSettingInfo,
  value: ConfigValue,
): { ok: true; value: string } | { ok: false; error: string } {
  const raw = String(value).trim();
  const bad = (why: string) => ({ ok: false as const, error: `${info.name}=${raw}: ${why}` });
  switch (info.vartype) {
    case 'bool': {
      const s = raw.toLowerCase();
      if (['on', 'true', 'yes', '1', 'tru', 'tr', 't', 'y', 'ye'].includes(s))
        return { ok: true, value: 'on' };
      if (['off', 'false', 'no', '0', 'of', 'fa', 'fal', 'fals', 'f', 'n'].includes(s))
        return { ok: true, value: 'off' };
      return bad('expected on or off');
    }
    case 'enum': {
      const v = raw.toLowerCase();
      const allowed = (info.enumvals ?? []).map((e) => e.toLowerCase());
      if (allowed.length && !allowed.includes(v)) return bad(`expected one of ${allowed.join(', ')}`);
      return { ok: true, value: v };
    }
    case 'integer':
    case 'real': {
      const m = /^(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*([a-zA-Z]*)$/.exec(raw);
      if (!m)
        return bad(`expected a number${info.unit ? ` (unit ${info.unit}, or with one: 8MB, 30s)` : ''}`);
      let n = Number(m[1]);
      const suffix = m[2] ?? '';
      const us = unitScale(info.unit);
      if (suffix) {
        if (!us || !(suffix in us.scale)) {
          return bad(
            us
              ? `unit ${suffix} is not one of ${Object.keys(us.scale).join(', ')}`
              : `${info.name} takes no unit`,
          );
        }
        n = (n * us.scale[suffix]!) / us.factor;
      }
      if (info.vartype === 'integer') n = Math.round(n);
      const min = info.min_val === null ? undefined : Number(info.min_val);
      const max = info.max_val === null ? undefined : Number(info.max_val);
      if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
        return bad(`out of range ${info.min_val}..${info.max_val}${info.unit ? ` (in ${info.unit})` : ''}`);
      }
      return { ok: true, value: String(n) };
    }
    default:
      return { ok: true, value: raw };
  }
}

/** Whether pg_settings' current `setting` already equals the requested value. */
export function settingEquals(info: PgSettingInfo, value: ConfigValue): boolean {
  const want = canonicalSetting(info, value);
  if (!want.ok) return false;
  if (info.vartype === 'integer' || info.vartype === 'real') {
    return Math.abs(Number(info.setting) - Number(want.value)) < 1e-9;
  }
  if (info.vartype === 'bool' || info.vartype === 'enum') return info.setting.toLowerCase() === want.value;
  return info.setting === want.value;
}

/** Whether a value already in the DCS (GET /config) is the requested one ("100" and 100 are). */
export function dcsValueEquals(current: unknown, value: ConfigValue): boolean {
  if (current === undefined || current === null) return false;
  if (typeof value === 'boolean' || typeof current === 'boolean') {
    const b = (x: unknown) => ['true', 'on', 'yes', '1'].includes(String(x).toLowerCase());
    return b(current) === b(value);
  }
  return String(current).trim() === String(value).trim();
}
