/**
 * Heartbeats and bounded polls that work both inside a Temporal activity and from the CLI.
 * Inside an activity they heartbeat with their progress and stop when the activity is cancelled;
 * elsewhere heartbeats are no-ops. Every poll has a deadline: nothing here waits forever.
 */
import { Context } from '@temporalio/activity';

/** The current activity context, or undefined when not running inside an activity (CLI, tests). */
export function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/**
 * Intents this attempt carries in every heartbeat (keyed by the attempt's Context): what it is
 * about to do that must not be done twice (a POST /restart). Seeded from the previous attempt's
 * last heartbeat details, so a retry — and its own retries — still see what an attempt that timed
 * out had started; later heartbeats add to them and never drop them.
 */
const carried = new WeakMap<Context, Record<string, unknown>>();

function intentsOf(ctx: Context): Record<string, unknown> {
  let intents = carried.get(ctx);
  if (!intents) {
    const prev: unknown = ctx.info.heartbeatDetails;
    const old =
      prev && typeof prev === 'object' && 'intents' in prev
        ? (prev as { intents: unknown }).intents
        : undefined;
    intents =
      old && typeof old === 'object' && !Array.isArray(old) ? { ...(old as Record<string, unknown>) } : {};
    carried.set(ctx, intents);
  }
  return intents;
}

/**
 * Heartbeat if running inside an activity; a no-op elsewhere. Once an intent was recorded (by this
 * attempt or an earlier one), every heartbeat carries `intents` beside its own details.
 */
export function heartbeat(details?: unknown): void {
  const ctx = activityContext();
  if (ctx) heartbeatOn(ctx, details);
}

/** The details this attempt heartbeated last (what the liveness ticker repeats). */
const lastDetails = new WeakMap<Context, unknown>();

function heartbeatOn(ctx: Context, details: unknown): void {
  lastDetails.set(ctx, details);
  const intents = intentsOf(ctx);
  if (Object.keys(intents).length === 0) {
    ctx.heartbeat(details);
    return;
  }
  const own =
    details === undefined
      ? {}
      : typeof details === 'object' && details !== null && !Array.isArray(details)
        ? details
        : { details };
  ctx.heartbeat({ ...own, intents: { ...intents } });
}

/**
 * Records, before acting, that this activity is about to do something it must never do twice (e.g.
 * `restart:pg103` → the postmaster start time it saw), and heartbeats it at once. Every later
 * heartbeat of this attempt and of its retries carries it (see `priorIntent`). A no-op outside an
 * activity (the CLI has no retry to protect).
 */
export function recordIntent(key: string, value: unknown, details?: unknown): void {
  const ctx = activityContext();
  if (!ctx) return;
  intentsOf(ctx)[key] = value;
  heartbeat(details ?? { intent: key });
}

/**
 * Drops an intent once it is known the act did not happen (the POST was refused before it was
 * sent), and heartbeats the rest, so a retry acts again instead of waiting for nothing.
 */
export function clearIntent(key: string, details?: unknown): void {
  const ctx = activityContext();
  if (!ctx) return;
  const intents = intentsOf(ctx);
  if (!(key in intents)) return;
  delete intents[key];
  ctx.heartbeat({ ...(details && typeof details === 'object' ? details : {}), intents: { ...intents } });
}

/** An intent recorded under `key` by this attempt or an earlier attempt of this activity, if any. */
export function priorIntent<T = unknown>(key: string): T | undefined {
  const ctx = activityContext();
  return ctx ? (intentsOf(ctx)[key] as T | undefined) : undefined;
}

/**
 * Records several keys at once as intents (what the switchover hand-off must tell its retry: its
 * intent to POST, then `posted`, then Patroni's answer), heartbeated at once and carried like any
 * intent by every later heartbeat of this attempt and its retries.
 */
export function keepInHeartbeats(values: Record<string, unknown>): void {
  const ctx = activityContext();
  if (!ctx) return;
  Object.assign(intentsOf(ctx), values);
  ctx.heartbeat({ intents: { ...intentsOf(ctx) } });
}

/** Every intent carried into this attempt or recorded by it (empty outside an activity). */
export function carriedIntents<T extends object>(): Partial<T> {
  const ctx = activityContext();
  return ctx ? ({ ...intentsOf(ctx) } as Partial<T>) : {};
}

/**
 * How often a long wait heartbeats: a fraction of the shortest heartbeat timeout the workflows give
 * a long activity (10 s), so a dead worker is noticed in time and a live one is never timed out.
 */
export const BEAT_EVERY_MS = 2000;

/** Runs `fn` while a ticker heartbeats `details()` every `everyMs` (a plain call outside an activity). */
async function ticking<T>(details: () => unknown, everyMs: number, fn: () => Promise<T>): Promise<T> {
  const ctx = activityContext();
  if (!ctx) return fn();
  // The context is taken now: a timer callback need not run inside the activity's async context.
  const timer = setInterval(() => heartbeatOn(ctx, details()), everyMs);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

/**
 * Awaits `work`, heartbeating `details` every `everyMs` while it is pending (a POST that takes
 * minutes, a slow probe). Nothing extra when it settles sooner; a plain await outside an activity.
 */
export function keepBeating<T>(work: Promise<T>, details: unknown, everyMs = BEAT_EVERY_MS): Promise<T> {
  return ticking(
    () => details,
    everyMs,
    () => work,
  );
}

/**
 * Runs `fn` while heartbeating `{ phase: phase() }` every `everyMs` (default a quarter of the
 * activity's heartbeat timeout, at most 1 s): no wait inside `fn` — a request, a connect, an answer
 * awaited — can outlast a short heartbeat timeout unheartbeated (the switchover hand-off's is 4 s).
 */
export function heartbeating<T>(phase: () => string, fn: () => Promise<T>, everyMs?: number): Promise<T> {
  const hb = activityContext()?.info.heartbeatTimeoutMs;
  const every = everyMs ?? (hb ? Math.max(50, Math.min(1000, Math.floor(hb / 4))) : 1000);
  return ticking(() => ({ phase: phase() }), every, fn);
}

/**
 * Runs `fn` while a ticker repeats this attempt's last heartbeat (with its intents) every
 * `BEAT_EVERY_MS` at most — a third of the heartbeat timeout when that is shorter. The heartbeat
 * timeout then says one thing only: the worker running the activity is gone (SIGKILLed, its host
 * down), whatever await the activity is in. A hung command is bounded by its own timeout and by the
 * activity's start-to-close timeout. The worker wraps every activity in it (activities/index.ts).
 */
export function whileAlive<T>(fn: () => Promise<T>): Promise<T> {
  const ctx = activityContext();
  const hb = ctx?.info.heartbeatTimeoutMs;
  if (!ctx || !hb) return fn();
  const every = Math.max(100, Math.min(BEAT_EVERY_MS, Math.floor(hb / 3)));
  return ticking(() => lastDetails.get(ctx), every, fn);
}

/** Every activity of `acts` run under `whileAlive`. */
export function aliveWhileRunning<A extends object>(acts: A): A {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(acts)) {
    out[name] =
      typeof fn === 'function'
        ? (...args: unknown[]) => whileAlive(() => (fn as (...a: unknown[]) => Promise<unknown>)(...args))
        : fn;
  }
  return out as A;
}

export function cancellationSignal(): AbortSignal | undefined {
  return activityContext()?.cancellationSignal;
}

export class PollTimeoutError extends Error {
  override readonly name = 'PollTimeoutError';
  constructor(
    message: string,
    readonly last: unknown,
  ) {
    super(message);
  }
}

export interface PollOptions {
  /** What is being waited for, for heartbeats and the timeout message: "3 healthy etcd members". */
  what: string;
  timeoutMs: number;
  intervalMs: number;
  signal?: AbortSignal;
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? new Error('cancelled'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason ?? new Error('cancelled'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Calls `probe` until it returns `{ done: true }` or the deadline passes. Each attempt heartbeats
 * with `{ what, attempt, last }`. On timeout throws PollTimeoutError whose message ends with the
 * last observation's description, so the operator sees what was found instead of what was wanted.
 */
export async function pollUntil<T>(
  opts: PollOptions,
  probe: () => Promise<{ done: boolean; value: T; describe: string }>,
): Promise<T> {
  if (!(opts.timeoutMs > 0) || !(opts.intervalMs > 0)) {
    throw new RangeError(`pollUntil(${opts.what}): timeoutMs and intervalMs must be positive`);
  }
  const signal = opts.signal ?? cancellationSignal();
  const deadline = Date.now() + opts.timeoutMs;
  let attempt = 0;
  let last = 'no observation yet';
  for (;;) {
    attempt++;
    // A probe may hang up to its own timeout (an unanswering REST API): heartbeat through it.
    const r = await keepBeating(probe(), { what: opts.what, attempt, last });
    last = r.describe;
    heartbeat({ what: opts.what, attempt, last });
    if (r.done) return r.value;
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new PollTimeoutError(
        `timed out after ${opts.timeoutMs} ms waiting for ${opts.what} (${attempt} checks); last seen: ${last}`,
        r.value,
      );
    }
    // A long interval is slept in slices, each followed by a heartbeat.
    for (let sleep = Math.min(opts.intervalMs, left); sleep > 0; sleep -= BEAT_EVERY_MS) {
      await delay(Math.min(sleep, BEAT_EVERY_MS), signal);
      if (sleep > BEAT_EVERY_MS) heartbeat({ what: opts.what, attempt, last });
    }
  }
}
