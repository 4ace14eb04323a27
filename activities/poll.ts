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

/** Heartbeat if running inside an activity; a no-op elsewhere. */
export function heartbeat(details?: unknown): void {
  activityContext()?.heartbeat(details);
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
