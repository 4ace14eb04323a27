/**
 * pgha's own metrics, beside the SDK's on the worker's Prometheus endpoint (PGHA_METRICS_ADDRESS),
 * recorded by the workflows where the results are known: the workflow metric meter emits nothing
 * while a history is replayed, so a run is counted once however often its worker replays it. They
 * create no command: adding one changes no released workflow.
 *
 *   pgha_runs{operation,outcome,cluster}                   a counter: runs by how they ended
 *   pgha_step_duration_ms{operation,step,status,cluster}   a histogram: each runbook step (ms)
 *   pgha_switchover_write_gap_ms{cluster,action}           the last hand-off: old leader cut → writes routed to the new one
 *   pgha_switchover_routing_lag_ms{cluster,action}         the last hand-off: candidate writable → writes routed to it
 *   pgha_backup_last_end_timestamp_seconds{cluster,kind}   the last backup's end; its age is `time() - this`
 *
 * (The SDK's exporter keeps the counter's name as it is, no `_total`; the histogram has `_bucket`,
 * `_sum` and `_count`, with buckets 50 100 500 1000 2500 10000 ms; the SDK adds namespace, taskQueue
 * and workflowType labels.) Gauges live in the worker process:
 * after a worker restart they return with the next switchover or backup.
 */
import { metricMeter } from '@temporalio/workflow';
import type { RunOutcome } from './messages';

export const MetricNames = {
  runs: 'pgha_runs',
  stepDuration: 'pgha_step_duration_ms',
  writeGap: 'pgha_switchover_write_gap_ms',
  routingLag: 'pgha_switchover_routing_lag_ms',
  backupEnd: 'pgha_backup_last_end_timestamp_seconds',
} as const;

/** A run ended: counted by operation and outcome. */
export function countRun(cluster: string, operation: string, outcome: RunOutcome): void {
  metricMeter
    .createCounter(MetricNames.runs, 'runs', 'pgha runbook runs by operation and outcome')
    .add(1, { cluster, operation, outcome });
}

/** A step ended (completed, failed or cancelled) after `ms`. */
export function recordStep(
  cluster: string,
  operation: string,
  step: string,
  status: string,
  ms: number,
): void {
  metricMeter
    .createHistogram(MetricNames.stepDuration, 'int', 'ms', 'pgha runbook step durations')
    .record(Math.max(0, Math.round(ms)), { cluster, operation, step, status });
}

/** A hand-off's timings (ms after the POST), as the switchover activity measured them. */
export interface HandoffTimings {
  oldLeaderCutMs?: number;
  candidateWritableMs?: number;
  routedMs?: number;
}

/**
 * The last switchover's (or failover's) write gap (old leader cut → routed) and routing lag
 * (candidate writable → routed), when the hand-off measured them (a resumed one may not have).
 */
export function recordHandoff(cluster: string, action: 'switchover' | 'failover', t: HandoffTimings): void {
  if (t.routedMs === undefined) return;
  const tags = { cluster, action };
  if (t.oldLeaderCutMs !== undefined)
    metricMeter
      .createGauge(
        MetricNames.writeGap,
        'int',
        'ms',
        "the last hand-off's write gap: old leader cut → writes routed",
      )
      .set(Math.max(0, t.routedMs - t.oldLeaderCutMs), tags);
  if (t.candidateWritableMs !== undefined)
    metricMeter
      .createGauge(
        MetricNames.routingLag,
        'int',
        'ms',
        "the last hand-off's routing lag: candidate writable → routed",
      )
      .set(Math.max(0, t.routedMs - t.candidateWritableMs), tags);
}

/** The last backup of the cluster ended at `endTime` (ISO; ignored when it does not parse). */
export function recordBackup(cluster: string, kind: string, endTime: string | undefined): void {
  const t = endTime ? Date.parse(endTime) : NaN;
  if (Number.isNaN(t)) return;
  metricMeter
    .createGauge(
      MetricNames.backupEnd,
      'int',
      's',
      "the last backup's end (unix seconds): its age is time() - this",
    )
    .set(Math.floor(t / 1000), { cluster, kind });
}
