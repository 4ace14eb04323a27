/**
 * Where a run's wall time went, from its history's timestamps: total wall time, the time during
 * which at least one activity was running (scheduled → closed, overlaps merged), and the rest —
 * what Temporal and the workflow itself added (task dispatch, workflow tasks, timers between steps).
 *
 *   npx tsx scripts/run-timing.ts <workflowId> [runId]
 */
import { withClient } from '../clients/connection';

type Interval = [number, number];

const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
  t ? Number(t.seconds ?? 0) * 1000 + Math.round((t.nanos ?? 0) / 1e6) : NaN;

/** Length of the union of intervals. */
export function covered(intervals: Interval[]): number {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let cur: Interval | undefined;
  for (const [s, e] of sorted) {
    if (!cur || s > cur[1]) {
      if (cur) total += cur[1] - cur[0];
      cur = [s, e];
    } else cur[1] = Math.max(cur[1], e);
  }
  if (cur) total += cur[1] - cur[0];
  return total;
}

async function main(): Promise<void> {
  const [workflowId, runId] = process.argv.slice(2);
  if (!workflowId) throw new Error('usage: tsx scripts/run-timing.ts <workflowId> [runId]');
  await withClient(async (client) => {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const events = history.events ?? [];
    const scheduled = new Map<string, { at: number; type: string }>();
    const spans: (Interval & { type: string })[] = [];
    for (const e of events) {
      const at = ms(e.eventTime as never);
      const a = e.activityTaskScheduledEventAttributes;
      if (a) scheduled.set(String(e.eventId), { at, type: a.activityType?.name ?? '?' });
      const closed =
        e.activityTaskCompletedEventAttributes ??
        e.activityTaskFailedEventAttributes ??
        e.activityTaskTimedOutEventAttributes ??
        e.activityTaskCanceledEventAttributes;
      if (closed?.scheduledEventId) {
        const s = scheduled.get(String(closed.scheduledEventId));
        if (s) spans.push(Object.assign([s.at, at] as Interval, { type: s.type }));
      }
    }
    const start = ms(events[0]?.eventTime as never);
    const end = ms(events[events.length - 1]?.eventTime as never);
    const wall = end - start;
    const inActivities = covered(spans);
    const byType = new Map<string, number>();
    for (const s of spans) byType.set(s.type, (byType.get(s.type) ?? 0) + (s[1] - s[0]));
    console.log(`${workflowId}: wall ${(wall / 1000).toFixed(1)} s, ${spans.length} activities`);
    console.log(`  with an activity running: ${(inActivities / 1000).toFixed(1)} s`);
    console.log(
      `  outside activities:        ${((wall - inActivities) / 1000).toFixed(2)} s (${((100 * (wall - inActivities)) / wall).toFixed(1)}%)`,
    );
    for (const [type, t] of [...byType].sort((a, b) => b[1] - a[1])) {
      console.log(`    ${type.padEnd(24)} ${(t / 1000).toFixed(1)} s (summed over parallel calls)`);
    }
  });
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
