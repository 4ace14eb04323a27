/**
 * Operating a run: `pgha runs`, `pgha watch`, `pgha approve`, `pgha pause`, `pgha resume`, `pgha cancel`.
 * A run is named by its workflow id (`deploy-lab`), or by `--cluster lab` for the operation running there.
 */
import { WorkflowUpdateFailedError } from '@temporalio/client';
import type { Client, WorkflowHandle } from '@temporalio/client';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import {
  PgCluster,
  PgOperation,
  PgOperator,
  PgOutcome,
  PgStep,
  approve,
  failureOutcome,
  operatorAction,
  pause,
  resume,
} from '../../workflows/messages';
import type { HandoffReport } from '../../workflows/switchover';
import { operator } from '../operator';
import { describeReport } from './switchover';
import type { RunbookProgress, StepProgress } from '../../workflows/messages';
import { withClient } from '../connection';
import { explainBusy, followRunbook, runningOperation } from '../runbook';
import type { RunbookOutcome, RunbookSnapshot } from '../runbook';

interface Target {
  cluster?: string;
}

/** The handle of the run named by `id`, or of the operation running on `--cluster`. */
async function resolveRun(client: Client, id: string | undefined, o: Target): Promise<WorkflowHandle> {
  if (id) return client.workflow.getHandle(id);
  if (!o.cluster) throw new Error('name the run: a workflow id (e.g. deploy-lab) or --cluster <name>');
  const r = await runningOperation(client, o.cluster);
  if (!r) throw new Error(`no pgha operation is running on cluster ${o.cluster} (see pgha runs --all)`);
  return client.workflow.getHandle(r.workflowId);
}

const time = (iso?: string) => (iso ? iso.slice(11, 19) : '--:--:--');

function stepLine(s: StepProgress): string {
  const what = s.kind === 'gate' ? `gate ${s.name}` : s.name;
  const extra = [
    s.node && `on ${s.node}`,
    s.attempt > 1 && `attempt ${s.attempt}`,
    s.decision &&
      `${s.decision.decision} by ${s.decision.approver}${s.decision.reason ? ` (${s.decision.reason})` : ''}`,
    s.status === 'waiting' && s.deadline && `until ${s.deadline}`,
    s.error && `: ${s.error}`,
    s.compensation && s.compensation !== 'registered' && `undo ${s.compensation}`,
    s.compensationError && `: ${s.compensationError}`,
  ]
    .filter(Boolean)
    .join(' ');
  return `${what.padEnd(28)} ${s.status.padEnd(10)} ${extra}`.trimEnd();
}

/** Prints what changed since the last snapshot: step transitions, retries, gates to decide. */
export function progressPrinter(workflowId: string, out: (line: string) => void = console.log) {
  const seen = new Map<string, string>();
  let lastState = '';
  let lastPending = '';
  return (snap: RunbookSnapshot) => {
    const p = snap.progress;
    if (!p) {
      if (lastState !== 'no-progress')
        out(`${workflowId}: ${snap.status.toLowerCase()}, waiting for a worker to answer`);
      lastState = 'no-progress';
      return;
    }
    if (snap.stale && snap.status === 'RUNNING' && lastState !== 'stale') {
      out(
        `          ${workflowId}: no worker answers right now (restarting?); showing the last progress seen`,
      );
      lastState = 'stale';
    }
    for (const s of p.steps) {
      const key = stepLine(s);
      if (seen.get(s.name) === key || s.status === 'pending') continue;
      seen.set(s.name, key);
      out(`${time(s.endedAt ?? s.startedAt)}  ${key}`);
      if (s.kind === 'gate' && s.status === 'waiting') {
        out(
          `          decide: pgha approve ${workflowId} --gate ${s.name} --by <name> [--reject --reason <why>]`,
        );
      }
    }
    const state = `${p.state}${p.paused ? ` (pause requested by ${p.paused.by ?? '?'}${p.paused.reason ? `: ${p.paused.reason}` : ''})` : ''}`;
    if (state !== lastState) out(`          ${workflowId}: ${state}${p.outcome ? ` — ${p.outcome}` : ''}`);
    lastState = state;
    const pending = snap.pending
      .filter((a) => a.attempt > 1)
      .map(
        (a) =>
          `${a.activityType} attempt ${a.attempt}${a.lastFailure ? `, last failure: ${a.lastFailure}` : ''}`,
      )
      .join('; ');
    if (pending && pending !== lastPending) out(`          retrying: ${pending}`);
    lastPending = pending;
  };
}

/**
 * The activity attempts of a run, per step, from its history (the retries the server made inside
 * one runbook attempt): `{ 'etcd': 'installEtcd ×3' }`. An activity belongs to the step that was
 * running when it was scheduled.
 */
export async function activityRetries(
  handle: WorkflowHandle,
  p: RunbookProgress,
): Promise<Map<string, string>> {
  const history = await handle.fetchHistory();
  const scheduled = new Map<string, { type: string; at: number }>();
  const out = new Map<string, string[]>();
  for (const e of history.events ?? []) {
    const id = String(e.eventId ?? '');
    const at = e.eventTime?.seconds
      ? Number(e.eventTime.seconds) * 1000 + Math.floor((e.eventTime.nanos ?? 0) / 1e6)
      : 0;
    if (e.activityTaskScheduledEventAttributes) {
      scheduled.set(id, { type: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', at });
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started && (started.attempt ?? 1) > 1) {
      const s = scheduled.get(String(started.scheduledEventId ?? ''));
      if (!s) continue;
      // The step in flight when it was scheduled: the last one started by then (a step's start is
      // the workflow task's time, which the scheduling event follows).
      const step = p.steps
        .filter((st) => st.startedAt && Date.parse(st.startedAt) <= s.at)
        .sort((a, b) => Date.parse(b.startedAt!) - Date.parse(a.startedAt!))[0];
      if (!step) continue;
      out.set(step.name, [...(out.get(step.name) ?? []), `${s.type} ×${started.attempt}`]);
    }
  }
  return new Map([...out].map(([k, v]) => [k, v.join(', ')]));
}

/** The result of a run as an operator reads it: the hand-off report, or the result itself as YAML. */
export function describeResult(result: unknown): string {
  if (result === undefined || result === null) return '';
  const r = result as Partial<HandoffReport>;
  if (
    typeof r === 'object' &&
    r.verify &&
    r.timings &&
    (r.action === 'switchover' || r.action === 'failover')
  ) {
    return describeReport(r as HandoffReport);
  }
  const text = stringify(result).trimEnd();
  const lines = text.split('\n');
  return lines.length > 80 ? [...lines.slice(0, 80), `… (${lines.length - 80} more lines)`].join('\n') : text;
}

export function progressTable(p: RunbookProgress, retries: Map<string, string> = new Map()): string {
  const t = new Table({
    style: { head: [], border: [] },
    head: ['step', 'status', 'node', 'started', 'ended', 'attempt', 'detail'],
  });
  for (const s of p.steps) {
    t.push([
      s.kind === 'gate' ? `gate ${s.name}` : s.name,
      s.status,
      s.node ?? '',
      time(s.startedAt),
      time(s.endedAt),
      `${s.attempt || ''}${retries.has(s.name) ? ` (${retries.get(s.name)})` : ''}`,
      [
        s.error,
        s.decision && `${s.decision.decision} by ${s.decision.approver}`,
        s.compensation && `undo ${s.compensation}`,
      ]
        .filter(Boolean)
        .join('; '),
    ]);
  }
  return t.toString();
}

/** Whether a run that ended like this was refused (a check said no; nothing was changed). */
export function isRefusal(o: RunbookOutcome): boolean {
  return o.status === 'FAILED' && failureOutcome(o.errorType) === 'refused';
}

/**
 * Follows a run live; prints the summary; exit code 0 only when it completed. A refusal is one line,
 * printed once (`<id>: refused [<type>]: <why and the fix>`), not the step, the table and the end.
 */
export async function watchRun(
  client: Client,
  handle: WorkflowHandle,
  timeoutMs?: number,
  /** The status that counts as success (exit 0): COMPLETED, or CANCELLED after `pgha cancel`. */
  success: 'COMPLETED' | 'CANCELLED' = 'COMPLETED',
): Promise<RunbookOutcome> {
  // Once the runbook says it failed, what the printer would say is held until we know whether it
  // was a refusal (then dropped) or a failure (then printed as before).
  const held: string[] = [];
  let holding = false;
  const printer = progressPrinter(handle.workflowId, (line) =>
    holding ? held.push(line) : console.log(line),
  );
  const o = await followRunbook(client, handle, {
    onChange: (s) => {
      holding ||= s.progress?.state === 'failed' || s.status === 'FAILED';
      printer(s);
    },
    timeoutMs,
  });
  if (isRefusal(o)) {
    console.log(`${handle.workflowId}: refused [${o.errorType}]: ${o.error}`);
    process.exitCode = 1;
    return o;
  }
  for (const line of held) console.log(line);
  if (o.progress) {
    const retries = await activityRetries(handle, o.progress).catch(() => new Map<string, string>());
    console.log(progressTable(o.progress, retries));
  }
  if (o.status === 'COMPLETED') {
    console.log(`${handle.workflowId}: completed`);
    const report = describeResult(o.result);
    if (report) console.log(report);
  } else if (o.status === success) {
    console.log(
      `${handle.workflowId}: ${o.status.toLowerCase()}${o.progress?.outcome ? ` — ${o.progress.outcome}` : ''}`,
    );
  } else {
    const busy = o.progress ? await explainBusy(client, o.progress.cluster, o) : undefined;
    console.log(
      `${handle.workflowId}: ${o.status.toLowerCase()}${o.errorType ? ` [${o.errorType}]` : ''}: ${busy ?? o.progress?.outcome ?? o.error}`,
    );
    process.exitCode = 1;
  }
  return o;
}

export function register(program: Command): void {
  program
    .command('runs')
    .description('list pgha runs (running ones; --all for finished ones too)')
    .option('--cluster <name>', 'only this cluster')
    .option('--all', 'include finished runs')
    .option('--limit <n>', 'at most this many', '20')
    .action((o: { cluster?: string; all?: boolean; limit: string }) =>
      withClient(async (client) => {
        const where = [o.cluster ? `PgCluster = '${o.cluster.replace(/'/g, '')}'` : 'PgCluster IS NOT NULL'];
        if (!o.all) where.push(`ExecutionStatus = 'Running'`);
        const t = new Table({
          style: { head: [], border: [] },
          head: [
            'workflow id',
            'run id',
            'cluster',
            'operation',
            'by',
            'status',
            'outcome',
            'step',
            'started',
          ],
        });
        let n = 0;
        for await (const wf of client.workflow.list({ query: where.join(' AND ') })) {
          t.push([
            wf.workflowId,
            wf.runId,
            wf.typedSearchAttributes.get(PgCluster) ?? '',
            wf.typedSearchAttributes.get(PgOperation) ?? '',
            (wf.typedSearchAttributes.get(PgOperator) ?? []).join(', '),
            wf.status.name,
            // succeeded | refused | failed | ... (runs from before PgOutcome existed: empty)
            wf.typedSearchAttributes.get(PgOutcome) ?? '',
            wf.typedSearchAttributes.get(PgStep) ?? '',
            wf.startTime.toISOString().replace('T', ' ').slice(0, 19),
          ]);
          if (++n >= Number(o.limit)) break;
        }
        console.log(
          n ? t.toString() : `no ${o.all ? '' : 'running '}pgha runs${o.cluster ? ` on ${o.cluster}` : ''}`,
        );
      }),
    );

  program
    .command('watch [workflowId]')
    .description('follow a run live until it ends (Ctrl-C stops watching, not the run)')
    .option('--cluster <name>', 'the operation running on this cluster')
    .option('--timeout <minutes>', 'stop watching after this long', '360')
    .action((id: string | undefined, o: Target & { timeout: string }) =>
      withClient(async (client) => {
        await watchRun(client, await resolveRun(client, id, o), Number(o.timeout) * 60_000);
      }),
    );

  program
    .command('approve [workflowId]')
    .description('decide an approval gate of a run (approve, or --reject)')
    .requiredOption('--gate <name>', 'the gate (pgha watch shows the one waiting)')
    .requiredOption('--by <name>', 'who decides (recorded in history)')
    .option('--reject', 'reject: the run ends without touching anything further')
    .option('--reason <text>', 'why (recorded)')
    .option('--cluster <name>', 'the operation running on this cluster')
    .action(
      (id: string | undefined, o: Target & { gate: string; by: string; reject?: boolean; reason?: string }) =>
        withClient(async (client) => {
          const h = await resolveRun(client, id, o);
          try {
            const r = await h.executeUpdate(approve, {
              args: [
                { gate: o.gate, approver: o.by, decision: o.reject ? 'reject' : 'approve', reason: o.reason },
              ],
            });
            console.log(
              `${h.workflowId}: gate ${r.gate} ${r.decision === 'approve' ? 'approved' : 'rejected'} by ${r.approver}`,
            );
          } catch (err) {
            if (err instanceof WorkflowUpdateFailedError) {
              throw new Error(
                `${h.workflowId} refused: ${(err.cause as Error | undefined)?.message ?? err.message}`,
              );
            }
            throw err;
          }
        }),
    );

  program
    .command('pause [workflowId]')
    .description('pause a run before its next step (the step in flight finishes)')
    .option('--by <name>', 'who pauses')
    .option('--reason <text>', 'why')
    .option('--cluster <name>', 'the operation running on this cluster')
    .action((id: string | undefined, o: Target & { by?: string; reason?: string }) =>
      withClient(async (client) => {
        const h = await resolveRun(client, id, o);
        await h.signal(pause, { by: o.by ?? operator(), reason: o.reason });
        console.log(
          `${h.workflowId}: pause requested; it stops before its next step (pgha resume ${h.workflowId})`,
        );
      }),
    );

  program
    .command('resume [workflowId]')
    .description('resume a paused run')
    .option('--by <name>', 'who resumes')
    .option('--cluster <name>', 'the operation running on this cluster')
    .action((id: string | undefined, o: Target & { by?: string }) =>
      withClient(async (client) => {
        const h = await resolveRun(client, id, o);
        await h.signal(resume, { by: o.by ?? operator() });
        console.log(`${h.workflowId}: resumed`);
      }),
    );

  program
    .command('cancel [workflowId]')
    .description('cancel a run: the step in flight is cancelled, then its compensations run in reverse')
    .option('--cluster <name>', 'the operation running on this cluster')
    .option('--watch', 'follow the compensations until the run ends (exit 0 once it ends cancelled)')
    .option('--by <name>', 'who cancels (recorded in the run; default $PGHA_OPERATOR or the OS user)')
    .option('--reason <text>', 'why (recorded)')
    .action((id: string | undefined, o: Target & { watch?: boolean; by?: string; reason?: string }) =>
      withClient(async (client) => {
        const h = await resolveRun(client, id, o);
        // Who cancels, for PgOperator (a cancel request carries only the client identity).
        await h.signal(operatorAction, { by: o.by ?? operator(), action: 'cancel', reason: o.reason });
        await h.cancel();
        console.log(
          `${h.workflowId}: cancellation requested; compensations run next (pgha watch ${h.workflowId})`,
        );
        if (o.watch) await watchRun(client, h, undefined, 'CANCELLED');
      }),
    );
}
