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

const kept = new WeakMap<Context, Record<string, unknown>>();

const asRecord = (d: unknown): Record<string, unknown> =>
  d === undefined
    ? {}
    : typeof d === 'object' && d !== null && !Array.isArray(d)
      ? (d as Record<string, unknown>)
      : { progress: d };

/**
 * Heartbeat if running inside an activity; a no-op elsewhere. Carries what `keepInHeartbeats`
 * recorded for this attempt (kept keys win over `details`' own): progress never drops it.
 */
export function heartbeat(details?: unknown): void {
  const ctx = activityContext();
  if (ctx) heartbeatOn(ctx, details);
}

function heartbeatOn(ctx: Context, details: unknown): void {
  const k = kept.get(ctx);
  ctx.heartbeat(k ? { ...asRecord(details), ...k } : details);
}

/**
 * Records `details` in this attempt's heartbeats for good: sent at once (merged with what was kept
 * before) and carried by every later heartbeat of the attempt, whoever sends it (pollUntil, a
 * `heartbeating` ticker). What an attempt must tell its retry (e.g. "I may have sent the POST")
 * goes here, never in a plain heartbeat that the next progress report overwrites.
 */
export function keepInHeartbeats(details: Record<string, unknown>): void {
  const ctx = activityContext();
  if (!ctx) return;
  kept.set(ctx, { ...kept.get(ctx), ...details });
  ctx.heartbeat({ ...kept.get(ctx) });
}

/** The heartbeat details the previous attempt of this activity left (undefined outside one, or on a first attempt). */
export function priorHeartbeat<T>(): T | undefined {
  return activityContext()?.info.heartbeatDetails as T | undefined;
}

/**
 * Runs `fn` while heartbeating `{ phase: phase() }` every `everyMs` (default a quarter of the
 * activity's heartbeat timeout, at most 1 s): no wait inside `fn` — a request, a connect, an answer
 * awaited — can outlast the heartbeat timeout unheartbeated. Outside an activity it only runs `fn`.
 */
export async function heartbeating<T>(
  phase: () => string,
  fn: () => Promise<T>,
  everyMs?: number,
): Promise<T> {
  const ctx = activityContext();
  if (!ctx) return fn();
  const hb = ctx.info.heartbeatTimeoutMs;
  const every = everyMs ?? (hb ? Math.max(50, Math.min(1000, Math.floor(hb / 4))) : 1000);
  const timer = setInterval(() => heartbeatOn(ctx, { phase: phase() }), every);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

/** The activity's cancellation signal, or undefined outside an activity. */
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
    const r = await probe();
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
    await delay(Math.min(opts.intervalMs, left), signal);
  }
}
