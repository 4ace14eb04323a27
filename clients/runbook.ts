/**
 * Starting and following runbooks from a client (the CLI, tests, schedules):
 * - startRunbook: deterministic workflow id `<operation>-<cluster>[-<suffix>]` with conflict policy
 *   FAIL, PgCluster/PgOperation/PgOperator set at start, a static summary and details the Web UI
 *   shows (cluster, operation, arguments, inventory digest, who), and a refusal — naming the running
 *   operation — when another pgha operation is running on the cluster;
 * - runningOperation: what holds a cluster (the lock workflow's parent, else visibility);
 * - followRunbook: live progress (the `progress` query + the activity in flight) until the run ends.
 *
 * Two layers make "one operation per cluster" sound: this client-side check gives the clear
 * message up front; the cluster lock taken inside the runbook (workflows/lock.ts, enforced by the
 * server's workflow-id uniqueness) holds even when two clients race past the check.
 */
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
} from '@temporalio/client';
import type { Client, WorkflowHandle, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import type { Workflow } from '@temporalio/common';
import { decodeOptionalFailureToOptionalError } from '@temporalio/common/lib/internal-non-workflow';
import { Failures } from '../runbooks/failures';
import { taskQueue } from '../temporal.config';
import {
  FailureType,
  PgCluster,
  PgOperation,
  PgOperator,
  PgStep,
  lockWorkflowId,
  progress,
  runbookWorkflowId,
  sharedOperations,
} from '../workflows/messages';
import type { RunbookProgress } from '../workflows/messages';
import { operator as currentOperator } from './operator';

export interface RunningOperation {
  workflowId: string;
  runId?: string;
  operation?: string;
  step?: string;
  startTime?: Date;
}

export class ClusterBusyError extends Error {
  override readonly name = Failures.ClusterBusy;
  constructor(
    readonly cluster: string,
    readonly running: RunningOperation,
    message?: string,
  ) {
    super(message ?? describeBusy(cluster, running));
  }
}

export function describeBusy(cluster: string, r: RunningOperation): string {
  const what = [
    r.operation && `operation ${r.operation}`,
    r.step && `at step ${r.step}`,
    r.startTime && `started ${r.startTime.toISOString()}`,
  ]
    .filter(Boolean)
    .join(', ');
  return (
    `cluster ${cluster} is busy: ${r.workflowId}${what ? ` (${what})` : ''} is running. ` +
    `Follow it with \`pgha watch ${r.workflowId}\`, or stop it with \`pgha cancel ${r.workflowId}\``
  );
}

/** The pgha operation running on `cluster`, if any. */
export async function runningOperation(
  client: Client,
  cluster: string,
): Promise<RunningOperation | undefined> {
  runbookWorkflowId('x', cluster); // validates the name before it goes into a query
  // 1. The lock: strongly consistent, names its holder (the runbook that started it as a child).
  try {
    const lock = await client.workflow.getHandle(lockWorkflowId(cluster)).describe();
    const parentId = lock.parentExecution?.workflowId;
    if (lock.status.name === 'RUNNING' && parentId) {
      const parentRunId = lock.parentExecution?.runId ?? undefined;
      const holder = await client.workflow
        .getHandle(parentId, parentRunId)
        .describe()
        .catch(() => undefined);
      return {
        workflowId: parentId,
        runId: parentRunId,
        operation: holder?.typedSearchAttributes.get(PgOperation),
        step: holder?.typedSearchAttributes.get(PgStep),
        startTime: holder?.startTime,
      };
    }
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
  // 2. Visibility: a runbook that started but has not taken the lock yet.
  const query = `PgCluster = '${cluster}' AND ExecutionStatus = 'Running'`;
  for await (const wf of client.workflow.list({ query, pageSize: 20 })) {
    const operation = wf.typedSearchAttributes.get(PgOperation);
    if (operation !== undefined && sharedOperations.includes(operation)) continue;
    return {
      workflowId: wf.workflowId,
      runId: wf.runId,
      operation,
      step: wf.typedSearchAttributes.get(PgStep),
      startTime: wf.startTime,
    };
  }
  return undefined;
}

export interface StartRunbookOptions<W extends Workflow> {
  workflow: W | string;
  args: Parameters<W>;
  cluster: string;
  operation: string;
  /** For operations that repeat while others of the same kind exist (e.g. a backup label). */
  suffix?: string;
  /** Refuse when another operation runs on the cluster (default true; false for read-only runbooks). */
  exclusive?: boolean;
  /** Default: the configured task queue (`pgha`). */
  taskQueue?: string;
  /** Who starts it (PgOperator, the summary): default `--by`, PGHA_OPERATOR or the OS user. */
  operator?: string;
}

/** A short, stable digest of an inventory input: the same file gives the same digest. */
export function inventoryDigest(inventory: unknown): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
          )
        : v;
  return `sha256:${createHash('sha256')
    .update(JSON.stringify(canonical(inventory)))
    .digest('hex')
    .slice(0, 16)}`;
}

/** A run's arguments as pgha shows them: an inventory replaced by its digest (it holds secrets only as references anyway). */
export function shownArgs(args: readonly unknown[]): unknown[] {
  return args.map((a) => {
    if (!a || typeof a !== 'object' || !('inventory' in a)) return a;
    const { inventory, ...rest } = a as Record<string, unknown>;
    return { ...rest, inventory: inventoryDigest(inventory) };
  });
}

/**
 * The run's static summary (one line) and details (markdown) as the Web UI shows them. They go
 * through the payload codec (a key holder reads them through the codec server). Arguments are shown
 * with the inventory replaced by its digest (it holds secrets only as references anyway).
 */
export function runbookMetadata(
  opts: { cluster: string; operation: string; workflowId: string; args: readonly unknown[] },
  who: string,
): { staticSummary: string; staticDetails: string } {
  const shown = shownArgs(opts.args);
  const digest = opts.args
    .map((a) =>
      a && typeof a === 'object' && 'inventory' in a
        ? inventoryDigest((a as Record<string, unknown>).inventory)
        : undefined,
    )
    .find(Boolean);
  let argsText = JSON.stringify(shown.length === 1 ? shown[0] : shown, null, 2) ?? '';
  if (argsText.length > 2000) argsText = `${argsText.slice(0, 2000)}\n…`;
  return {
    staticSummary: `pgha ${opts.operation} on cluster ${opts.cluster}, started by ${who}`,
    staticDetails: [
      `**cluster** ${opts.cluster}  `,
      `**operation** ${opts.operation}  `,
      `**started by** ${who}  `,
      `**workflow** ${opts.workflowId}  `,
      ...(digest ? [`**inventory** ${digest}  `] : []),
      '',
      '**arguments**',
      '',
      '```json',
      argsText,
      '```',
    ].join('\n'),
  };
}

export async function startRunbook<W extends Workflow>(
  client: Client,
  opts: StartRunbookOptions<W>,
): Promise<WorkflowHandleWithFirstExecutionRunId<W>> {
  const workflowId = runbookWorkflowId(opts.operation, opts.cluster, opts.suffix);
  const who = opts.operator ?? currentOperator();
  if (opts.exclusive ?? true) {
    const running = await runningOperation(client, opts.cluster);
    if (running) throw new ClusterBusyError(opts.cluster, running);
  }
  try {
    return await client.workflow.start(opts.workflow, {
      taskQueue: opts.taskQueue ?? taskQueue,
      workflowId,
      args: opts.args,
      workflowIdConflictPolicy: 'FAIL',
      typedSearchAttributes: [
        { key: PgCluster, value: opts.cluster },
        { key: PgOperation, value: opts.operation },
        { key: PgOperator, value: [who] },
      ],
      ...runbookMetadata({ ...opts, workflowId, args: opts.args }, who),
    } as Parameters<Client['workflow']['start']>[1]);
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new ClusterBusyError(opts.cluster, { workflowId, operation: opts.operation });
    }
    throw err;
  }
}

/** The activity in flight, as the server sees it (attempt and last failure of its retries). */
export interface PendingActivity {
  activityType: string;
  attempt: number;
  state: string;
  lastFailure?: string;
}

export interface RunbookSnapshot {
  status: string;
  progress?: RunbookProgress;
  /** No worker answered the progress query in time: `progress` is the last one seen (if any). */
  stale?: boolean;
  pending: PendingActivity[];
}

/**
 * How long a progress query may take. Right after a worker dies the server first tries the dead
 * worker's sticky queue (about 10 s); watching does not wait for it: it shows what it saw last.
 */
export const queryTimeoutMs = 2500;

/**
 * One look at a run: status, progress query (when a worker answers within queryTimeoutMs) and
 * pending activities. `previous` is kept (marked stale) when no worker answers.
 */
export async function snapshot(
  client: Client,
  handle: WorkflowHandle,
  previous?: RunbookProgress,
): Promise<RunbookSnapshot> {
  const desc = await handle.describe();
  let prog: RunbookProgress | undefined;
  let stale = false;
  try {
    prog = await client.withDeadline(Date.now() + queryTimeoutMs, () => handle.query(progress));
  } catch {
    // no worker yet, a worker restarting, or the first workflow task has not run
    prog = previous;
    stale = true;
  }
  const converter = client.options.loadedDataConverter;
  const pending: PendingActivity[] = [];
  for (const pa of desc.raw.pendingActivities ?? []) {
    const failure = await decodeOptionalFailureToOptionalError(converter, pa.lastFailure).catch(
      () => undefined,
    );
    pending.push({
      activityType: pa.activityType?.name ?? '?',
      attempt: pa.attempt ?? 1,
      state: String(pa.state ?? ''),
      lastFailure: failure?.message,
    });
  }
  return { status: desc.status.name, progress: prog, stale: stale || undefined, pending };
}

export interface FollowOptions {
  onChange: (s: RunbookSnapshot) => void;
  intervalMs?: number;
  /** Stop watching (not the run) after this long. */
  timeoutMs?: number;
}

export interface RunbookOutcome<T = unknown> {
  status: string;
  result?: T;
  /** The failure's own message (the activity's, the gate's), when the run failed. */
  error?: string;
  errorType?: string;
  progress?: RunbookProgress;
}

/** Follows a run until it closes, calling onChange for every change; returns how it ended. */
export async function followRunbook<T = unknown>(
  client: Client,
  handle: WorkflowHandle,
  opts: FollowOptions,
): Promise<RunbookOutcome<T>> {
  const interval = opts.intervalMs ?? 1000;
  const deadline = Date.now() + (opts.timeoutMs ?? 6 * 3600_000);
  let last = '';
  let snap: RunbookSnapshot;
  let prev: RunbookProgress | undefined;
  for (;;) {
    snap = await snapshot(client, handle, prev);
    prev = snap.progress;
    const key = JSON.stringify(snap);
    if (key !== last) opts.onChange(snap);
    last = key;
    if (snap.status !== 'RUNNING') break;
    if (Date.now() > deadline) {
      throw new Error(`stopped watching ${handle.workflowId} after ${opts.timeoutMs} ms; the run goes on`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
  return outcome<T>(handle, snap.progress);
}

export async function outcome<T>(handle: WorkflowHandle, prog?: RunbookProgress): Promise<RunbookOutcome<T>> {
  try {
    const result = (await handle.result()) as T;
    return { status: 'COMPLETED', result, progress: prog };
  } catch (err) {
    const status = (await handle.describe()).status.name;
    let cause: unknown = err instanceof WorkflowFailedError ? err.cause : err;
    while (cause instanceof Error && cause.cause instanceof Error && !(cause instanceof ApplicationFailure)) {
      cause = cause.cause;
    }
    return {
      status,
      error: cause instanceof Error ? cause.message : String(cause),
      errorType: cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined,
      progress: prog,
    };
  }
}

/** For a run that failed with ClusterBusy: who holds the cluster now (if still running). */
export async function explainBusy(
  client: Client,
  cluster: string,
  o: RunbookOutcome,
): Promise<string | undefined> {
  if (o.errorType !== FailureType.ClusterBusy) return undefined;
  const r = await runningOperation(client, cluster);
  return r ? describeBusy(cluster, r) : o.error;
}
