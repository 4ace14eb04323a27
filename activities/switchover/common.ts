/** Small helpers the switchover activities share: failures and byte counts as an operator reads them. */
import { ApplicationFailure } from '@temporalio/common';
import { Failures } from '../../runbooks/failures';

const MiB = 1024 * 1024;
export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return 'unknown';
  if (n >= MiB) return `${(n / MiB).toFixed(n >= 10 * MiB ? 0 : 1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${n} B`;
}

/** A pre-check said no: nothing was changed. */
export const refuse = (message: string) =>
  ApplicationFailure.nonRetryable(message, Failures.SwitchoverRefused);

/** The hand-off was attempted and did not end as asked (final: never retried). */
export const failed = (message: string, details?: unknown) =>
  ApplicationFailure.create({
    message,
    type: Failures.SwitchoverFailed,
    nonRetryable: true,
    details: [details],
  });

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
