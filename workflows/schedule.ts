/**
 * The bounds of a scheduled runbook time (switchover --at): checked by the CLI before it starts
 * anything and again by the workflow against workflow time (deterministic), so that a time in the
 * past never runs at once and a typo'd year never waits for ever. Pure: clients and workflows share it.
 */

/** How far in the past a time may be (clock skew between the operator's machine and the worker). */
export const SCHEDULE_GRACE_MS = 30_000;
/** How far ahead a time may be: the same bound as a runbook's longest pause. */
export const SCHEDULE_MAX_AHEAD_MS = 7 * 24 * 3600_000;

/** Why `atMs` cannot be scheduled at `nowMs` (naming `field` and the fix), or undefined when it can. */
export function scheduleProblem(field: string, atMs: number, nowMs: number): string | undefined {
  const at = new Date(atMs).toISOString();
  const now = new Date(nowMs).toISOString();
  if (atMs < nowMs - SCHEDULE_GRACE_MS) {
    return (
      `${field} ${at} is in the past (now ${now}): nothing was done. ` +
      `Give a future time (ISO 8601, e.g. ${new Date(nowMs + 3600_000).toISOString()}), or leave ${field} out to run now`
    );
  }
  if (atMs > nowMs + SCHEDULE_MAX_AHEAD_MS) {
    return (
      `${field} ${at} is more than 7 days ahead (now ${now}): nothing was done. ` +
      `Give a time within 7 days (check the year), or start it closer to the time`
    );
  }
  return undefined;
}
