/**
 * Configuration changes:
 * - configPreview: the same checks and comparison, nothing PATCHed (applyConfig's dry run).
 * - configApply: the DCS keys and PostgreSQL parameters checked (unknown name, bad value, non-DCS
 *   key → a clear refusal), compared with GET /config, and only what differs PATCHed.
 * - configWaitApplied: a bounded wait (Patroni applies the DCS config once per loop_wait) until every
 *   member runs with the new values, or reports a pending restart for them.
 */
import type { Inventory } from '../../runbooks/schema';
import {
  HOT_STANDBY_PARAMETERS,
  canonicalSetting,
  classifyConfig,
  dcsValueEquals,
  getPath,
  patchBody,
  settingEquals,
} from '../../runbooks/patroni-config';
import type { ConfigChange, ConfigValue } from '../../runbooks/patroni-config';
import { memberNames, restApi, restApiAuth, sqlConn } from '../../runbooks/topology';
import type { PatroniNodeStatus } from '../patroni';
import { pollUntil } from '../poll';
import type { PgSettingRow } from '../postgres';
import { fail, patroniOf, refuse } from './common';
import type { ConfigApplyResult, ConfigMemberState, MaintenanceDeps } from './types';

export interface ConfigApplyArgs {
  inv: Inventory;
  set: Record<string, ConfigValue>;
  leader: string;
  /** How the caller will restart: a lowering that needs the leader first is refused for a switchover. */
  restart?: 'switchover' | 'in-place' | 'none';
}

export interface ConfigWaitArgs {
  inv: Inventory;
  set: Record<string, ConfigValue>;
  timeoutMs?: number;
  /** After the restarts: every member must run the values (a pending restart is not enough). */
  running?: boolean;
}

const paramName = (c: ConfigChange) => c.path[2]!;

async function settingsOf(
  deps: MaintenanceDeps,
  inv: Inventory,
  member: string,
  names: string[],
): Promise<PgSettingRow[]> {
  return names.length ? deps.postgres.pgSettings({ conn: sqlConn(inv, member), names }) : [];
}

/** The changes, refused as a whole if one is unknown or invalid. */
function classifyOrRefuse(set: Record<string, ConfigValue>): ConfigChange[] {
  try {
    return classifyConfig(set);
  } catch (err) {
    refuse((err as Error).message);
  }
}

/** Every parameter known to the leader's pg_settings with a valid value, or a refusal. */
function checkParams(params: ConfigChange[], infos: Map<string, PgSettingRow>, leader: string): void {
  const errors: string[] = [];
  for (const c of params) {
    const name = paramName(c);
    const info = infos.get(name);
    if (!info) {
      errors.push(
        `${c.key}: PostgreSQL on ${leader} knows no parameter ${name} (not in pg_settings); check the spelling, ` +
          `or for a Patroni DCS key use one of ttl, loop_wait, retry_timeout, maximum_lag_on_failover, ...`,
      );
      continue;
    }
    const canon = canonicalSetting(info, c.value);
    if (!canon.ok) errors.push(canon.error);
  }
  if (errors.length) refuse(`nothing was changed: ${errors.join('; ')}`);
}

/** Which member restarts first: the leader when a hot-standby parameter goes down. */
function restartOrderOf(
  params: ConfigChange[],
  infos: Map<string, PgSettingRow>,
  restart: ConfigApplyArgs['restart'],
): Pick<ConfigApplyResult, 'restartOrder' | 'orderReason'> {
  // Lowered below what the leader runs now (not what the DCS says: a retried call sees the same).
  const lowered = params
    .filter((c) => HOT_STANDBY_PARAMETERS.includes(paramName(c)))
    .filter((c) => {
      const info = infos.get(paramName(c))!;
      const want = canonicalSetting(info, c.value);
      return want.ok && Number(want.value) < Number(info.setting);
    })
    .map((c) => `${paramName(c)} ${infos.get(paramName(c))!.setting} → ${String(c.value)}`);
  if (!lowered.length) return { restartOrder: 'replicas-first', orderReason: undefined };
  const orderReason = `lowering ${lowered.join(', ')}: a standby must keep these at least as high as its primary, so the leader restarts first`;
  if (restart === 'switchover') {
    refuse(
      `nothing was changed: ${orderReason}, in place — a switchover would promote a replica still running the higher value. ` +
        `Use --restart in-place (or --restart none and restart later)`,
    );
  }
  return { restartOrder: 'leader-first', orderReason };
}

/** Each change compared with the DCS document now (a parameter by its canonical value). */
function diffConfig(
  current: unknown,
  changes: ConfigChange[],
  infos: Map<string, PgSettingRow>,
): Pick<ConfigApplyResult, 'changed' | 'unchanged'> {
  const changed: ConfigApplyResult['changed'] = [];
  const unchanged: ConfigApplyResult['unchanged'] = [];
  for (const c of changes) {
    const cur = getPath(current, c.path);
    let same = dcsValueEquals(cur, c.value);
    const info = c.kind === 'parameter' ? infos.get(paramName(c)) : undefined;
    if (!same && info && cur !== undefined && cur !== null) {
      const a = canonicalSetting(info, cur as ConfigValue);
      const b = canonicalSetting(info, c.value);
      same = a.ok && b.ok && a.value === b.value;
    }
    if (same) unchanged.push({ key: c.key, value: cur });
    else
      changed.push({
        key: c.key,
        from: cur ?? null,
        to: c.value,
        needsRestart: info?.context === 'postmaster',
      });
  }
  return { changed, unchanged };
}

/** The keys checked against the leader and compared with GET /config: what a PATCH would change. Reads only. */
async function configPlan(deps: MaintenanceDeps, args: ConfigApplyArgs) {
  const { inv, leader } = args;
  const changes = classifyOrRefuse(args.set);
  const params = changes.filter((c) => c.kind === 'parameter');
  const infos = new Map((await settingsOf(deps, inv, leader, params.map(paramName))).map((r) => [r.name, r]));
  checkParams(params, infos, leader);
  const order = restartOrderOf(params, infos, args.restart);
  const current = (await deps.patroni.patroniGetConfig({ target: restApi(inv, leader) })).body ?? {};
  return { changes, ...diffConfig(current, changes, infos), ...order };
}

/** applyConfig's dry run: what configApply would PATCH and the restart order, refused as it would be; nothing changed. */
export async function configPreview(
  deps: MaintenanceDeps,
  args: ConfigApplyArgs,
): Promise<ConfigApplyResult> {
  const { changes: _changes, ...result } = await configPlan(deps, args);
  return result;
}

export async function configApply(deps: MaintenanceDeps, args: ConfigApplyArgs): Promise<ConfigApplyResult> {
  const { inv, leader } = args;
  const { changes, changed, unchanged, ...order } = await configPlan(deps, args);
  if (changed.length) {
    const body = patchBody(changes.filter((c) => changed.some((x) => x.key === c.key)));
    const r = await deps.patroni.patroniPatchConfig({
      target: restApi(inv, leader),
      auth: restApiAuth(inv),
      patch: body,
    });
    if (r.status !== 200)
      fail(`PATCH /config on ${leader} answered ${r.status}: ${r.text ?? JSON.stringify(r.body)}`);
  }
  return { changed, unchanged, ...order };
}

type Reasons = Record<string, { old_value?: unknown; new_value?: unknown }>;

/**
 * A postmaster parameter cannot change without a restart: picked up = Patroni flags a pending
 * restart for it (what POST /restart {restart_pending} acts on), for THIS value when Patroni says
 * which (pending_restart_reason, Patroni >= 3.0.4).
 */
function pendingFor(
  row: PgSettingRow,
  value: ConfigValue,
  st: PatroniNodeStatus,
  reasons: Reasons | undefined,
) {
  if (row.context !== 'postmaster' || !st.pending_restart) return false;
  if (reasons === undefined) return true;
  const why = reasons[row.name];
  const want = canonicalSetting(row, value);
  if (why === undefined || !want.ok) return false;
  const got = canonicalSetting(row, String(why.new_value ?? ''));
  return got.ok && got.value === want.value;
}

/** One member: its state, and what it still waits for (none: applied). */
async function memberApplied(
  deps: MaintenanceDeps,
  args: ConfigWaitArgs,
  member: string,
  changes: ConfigChange[],
): Promise<{ state: ConfigMemberState; waiting: string[] }> {
  const { inv } = args;
  const params = changes.filter((c) => c.kind === 'parameter');
  const dcs = changes.filter((c) => c.kind === 'dcs');
  const st = await patroniOf(deps, inv, member);
  const reasons =
    st?.pending_restart_reason && typeof st.pending_restart_reason === 'object'
      ? (st.pending_restart_reason as Reasons)
      : undefined;
  const state: ConfigMemberState = {
    member,
    pendingRestart: Boolean(st?.pending_restart),
    pendingRestartReason: reasons ? Object.keys(reasons).sort() : undefined,
    settings: {},
  };
  if (!st) return { state, waiting: [`${member}: REST API not answering`] };
  let rows: PgSettingRow[] = [];
  try {
    rows = await settingsOf(deps, inv, member, params.map(paramName));
  } catch (err) {
    return { state, waiting: [`${member}: ${(err as Error).message}`] };
  }
  const waiting: string[] = [];
  for (const c of params) {
    const name = paramName(c);
    const row = rows.find((r) => r.name === name);
    if (!row) {
      waiting.push(`${member}: ${name} unknown`);
      continue;
    }
    state.settings[name] = row.setting;
    if (settingEquals(row, c.value)) continue;
    if (!args.running && pendingFor(row, c.value, st, reasons)) continue;
    waiting.push(
      `${member}: ${name} = ${row.setting}${row.unit ?? ''}` +
        (row.context === 'postmaster' ? ` (restart pending: ${st.pending_restart ? 'yes' : 'not yet'})` : ''),
    );
  }
  if (dcs.length) {
    try {
      const cfg = (await deps.patroni.patroniGetConfig({ target: restApi(inv, member) })).body ?? {};
      for (const c of dcs) {
        const cur = getPath(cfg, c.path);
        if (!dcsValueEquals(cur, c.value)) waiting.push(`${member}: ${c.key} = ${String(cur)}`);
      }
    } catch (err) {
      waiting.push(`${member}: ${(err as Error).message}`);
    }
  }
  return { state, waiting };
}

export async function configWaitApplied(
  deps: MaintenanceDeps,
  args: ConfigWaitArgs,
): Promise<ConfigMemberState[]> {
  const { inv } = args;
  const changes = classifyConfig(args.set);
  // Patroni applies the DCS document once per loop (loop_wait), plus a reload.
  const timeoutMs = args.timeoutMs ?? Math.max(60_000, inv.patroni.loopWait * 1000 * 4);
  return pollUntil(
    { what: `every member running with ${Object.keys(args.set).join(', ')}`, timeoutMs, intervalMs: 1000 },
    async () => {
      const states: ConfigMemberState[] = [];
      const waiting: string[] = [];
      for (const member of memberNames(inv)) {
        const r = await memberApplied(deps, args, member, changes);
        states.push(r.state);
        waiting.push(...r.waiting);
      }
      return { done: waiting.length === 0, value: states, describe: waiting.join('; ') || 'all applied' };
    },
  );
}
