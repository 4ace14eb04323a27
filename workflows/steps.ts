/**
 * The runbook machinery every pgha workflow uses, so that a runbook reads like the seed's prose:
 *
 *   export async function deployCluster(input: DeployInput) {
 *     return runbook({ cluster: input.cluster, operation: 'deploy', plan: ['preflight', 'etcd', { gate: 'before-bootstrap' }, 'patroni'] },
 *       async (rb) => {
 *         await rb.step('preflight', () => acts.preflight(input));
 *         await rb.step('etcd', () => acts.installEtcd(input), { compensate: () => acts.removeEtcd(input) });
 *         await rb.approval('before-bootstrap', { timeout: '1h' });
 *         for (const n of nodes) await rb.step(`patroni ${n}`, () => acts.startPatroni(n), { node: n });
 *       });
 *   }
 *
 * What `runbook()` gives every runbook:
 * - a cluster lock: a child workflow `pgha-lock-<cluster>` (workflow ids are unique among running
 *   workflows, so the server itself refuses a second holder); a second operation fails at once with
 *   ApplicationFailure type ClusterBusy; the lock is released when the runbook ends, however it ends
 *   (parent close policy TERMINATE covers a terminated runbook);
 * - named steps with status, times, attempt and error in the `progress` query, and the PgCluster,
 *   PgOperation, PgStep, PgNode search attributes upserted as steps advance;
 * - approval gates (`approve` update, validated synchronously; reject or timeout ends the runbook
 *   with ApprovalRejected / ApprovalTimedOut and touches nothing further);
 * - `pause` / `resume` honoured before each step and gate (a pause longer than maxPause, default
 *   7 days, ends the runbook with PauseTimedOut);
 * - cancellation: the step in flight is cancelled, then the compensations registered by the steps
 *   that started run in reverse order inside a non-cancellable scope; the run ends Cancelled;
 * - handlers finished before the workflow returns;
 * - a readable run in the Web UI: the current details (`setCurrentDetails`) say where the runbook
 *   is, timers and waits carry summaries, and everyone who approves, rejects, pauses, resumes or
 *   cancels is added to the PgOperator search attribute (the starter is set there at start).
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  isCancellation,
  log,
  patched,
  setCurrentDetails,
  setHandler,
  sleep,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ChildWorkflowHandle } from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { Duration } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';
import {
  FailureType,
  PgCluster,
  PgNode,
  PgOperation,
  PgOperator,
  PgOutcome,
  PgStep,
  approve,
  failureOutcome,
  lockWorkflowId,
  operatorAction,
  pause,
  progress,
  release,
  resume,
} from './messages';
import type {
  ApproveInput,
  ApproveResult,
  RunOutcome,
  RunbookProgress,
  RunbookState,
  StepProgress,
} from './messages';
import { Patches } from './patches';
import { clusterLock } from './lock';
import { summarized } from './activity-options';
import { countRun, recordStep } from './metrics';
import { Failures } from '../runbooks/failures';
import type { Activities } from '../activities';
import type { RunEvent, RunEventKind } from '../activities/notify';

/** A step name, or an approval gate: `{ gate: 'before-bootstrap' }`. */
export type PlanEntry = string | { gate: string };

export interface RunbookOptions {
  cluster: string;
  /** deploy, switchover, upgrade, ... (the PgOperation search attribute). */
  operation: string;
  /** The steps and gates shown as pending from the start; steps not listed are added as they run. */
  plan?: PlanEntry[];
  /** Take the cluster lock (default true). Read-only runbooks (status) may run beside others. */
  lock?: boolean;
  /** The longest a pause may last before the runbook ends with PauseTimedOut (default 7 days). */
  maxPause?: Duration;
  /** The inventory's `notify`: its webhook is told when the run starts, waits, pauses and ends. */
  notify?: { webhook: string };
}

export interface StepOptions {
  /** The node (hostname) this step acts on: shown in progress and set as PgNode. */
  node?: string;
  /**
   * Undo for this step, run if the runbook is cancelled (in reverse step order). Registered when the
   * step starts, so it must be idempotent and cope with a step that only partly ran.
   */
  compensate?: () => Promise<unknown>;
  /** Run the whole step again when it fails (default 1: no runbook-level retry). */
  attempts?: number;
  /** Wait between runbook-level attempts (default 10s). */
  retryDelay?: Duration;
}

export interface ApprovalOptions {
  /** How long to wait for a decision before the runbook ends with ApprovalTimedOut. */
  timeout: Duration;
}

const now = () => new Date().toISOString();

/** The message an operator needs: the activity's (or child's) own failure, not "Activity task failed". */
export function errorMessage(err: unknown): string {
  let e: unknown = err;
  while ((e instanceof ActivityFailure || e instanceof ChildWorkflowFailure) && e.cause) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}

/** The failure type of an ApplicationFailure, also when it arrives wrapped (activity, child). */
export function failureTypeOf(err: unknown): string | undefined {
  let e: unknown = err;
  while ((e instanceof ActivityFailure || e instanceof ChildWorkflowFailure) && e.cause) e = e.cause;
  return e instanceof ApplicationFailure ? (e.type ?? undefined) : undefined;
}

/**
 * Records how the run ended as the PgOutcome search attribute (the Web UI and `pgha runs` show it):
 * a refusal is told apart from a failure. Runs started before this existed replay without it.
 */
export function recordOutcome(outcome: RunOutcome): void {
  if (patched(Patches.outcomeAttribute)) upsertSearchAttributes([{ key: PgOutcome, value: outcome }]);
  // The pgha_runs metric, once per run: by the runbook's own cluster and operation, or (a refusal
  // before the runbook started) the ones the run was started with.
  if (outcomeCounted) return;
  outcomeCounted = true;
  const info = workflowInfo();
  countRun(
    activeRunbook?.cluster ?? info.typedSearchAttributes.get(PgCluster) ?? '',
    activeRunbook?.operation ?? info.typedSearchAttributes.get(PgOperation) ?? info.workflowType,
    outcome,
  );
}

// Workflow module state is per run (the SDK isolates each workflow's globals).
let outcomeCounted = false;
let activeRunbook: { cluster: string; operation: string } | undefined;

export class Runbook {
  readonly cluster: string;
  readonly operation: string;
  private readonly lockEnabled: boolean;
  private readonly maxPause: Duration;
  private readonly state: RunbookProgress;
  private readonly compensations: { step: StepProgress; fn: () => Promise<unknown> }[] = [];
  private pauseRequest?: { by?: string; reason?: string; at: string };
  private waitingGate?: StepProgress;
  private lockHandle?: ChildWorkflowHandle<typeof clusterLock>;
  /** The webhook reference, in runs that notify (an inventory with notify, a run that knows it). */
  private readonly webhook?: string;
  private readonly notifications: Promise<void>[] = [];

  constructor(opts: RunbookOptions) {
    this.cluster = opts.cluster;
    this.operation = opts.operation;
    this.webhook = opts.notify?.webhook && patched(Patches.notifyWebhook) ? opts.notify.webhook : undefined;
    activeRunbook = { cluster: opts.cluster, operation: opts.operation };
    this.lockEnabled = opts.lock ?? true;
    this.maxPause = opts.maxPause ?? '7 days';
    this.state = {
      cluster: opts.cluster,
      operation: opts.operation,
      workflowId: workflowInfo().workflowId,
      state: 'running',
      steps: (opts.plan ?? []).map((e) =>
        typeof e === 'string'
          ? { name: e, kind: 'step', status: 'pending', attempt: 0 }
          : { name: e.gate, kind: 'gate', status: 'pending', attempt: 0 },
      ),
      startedAt: now(),
    };
    setHandler(progress, () => this.progress());
    setHandler(approve, (input) => this.decide(input), { validator: (input) => this.validateApprove(input) });
    setHandler(pause, (p) => {
      this.pauseRequest = { by: p?.by, reason: p?.reason, at: now() };
      this.state.paused = this.pauseRequest;
      this.noteOperator(p?.by);
      this.showDetails();
    });
    setHandler(resume, (p) => {
      this.pauseRequest = undefined;
      this.state.paused = undefined;
      this.noteOperator(p?.by);
      this.showDetails();
    });
    setHandler(operatorAction, (a) => this.noteOperator(a?.by));
  }

  /**
   * What the Web UI shows as the run's current details (markdown): cluster, operation, the step in
   * flight and where, how far along, and what the operator can do now.
   */
  currentDetails(): string {
    const p = this.state;
    const done = p.steps.filter((s) => s.status === 'completed' || s.status === 'approved').length;
    const lines = [
      `**${p.operation}** on cluster **${p.cluster}**: ${p.state}${p.outcome ? ` — ${p.outcome}` : ''}`,
    ];
    const cur = p.steps.find((s) => s.name === p.current);
    if (cur) {
      lines.push(
        `${cur.kind === 'gate' ? 'gate' : 'step'} **${cur.name}**${cur.node ? ` on ${cur.node}` : ''}` +
          `${cur.attempt > 1 ? ` (attempt ${cur.attempt})` : ''}, ${done}/${p.steps.length} done`,
      );
      if (cur.kind === 'gate' && cur.status === 'waiting') {
        lines.push(
          `waiting until ${cur.deadline ?? '?'}: \`pgha approve ${p.workflowId} --gate ${cur.name} --by NAME\``,
        );
      }
    } else if (p.state === 'running') {
      lines.push(`${done}/${p.steps.length} steps done`);
    }
    if (p.paused)
      lines.push(
        `pause requested by ${p.paused.by ?? 'someone'}${p.paused.reason ? `: ${p.paused.reason}` : ''}`,
      );
    return lines.join('\n\n');
  }

  private showDetails(): void {
    setCurrentDetails(this.currentDetails());
  }

  /** Adds who acted to PgOperator (runs from before it existed replay without). */
  private noteOperator(by: string | undefined): void {
    const name = typeof by === 'string' ? by.trim() : '';
    if (!name || !patched(Patches.operatorAttribute)) return;
    const have = workflowInfo().typedSearchAttributes.get(PgOperator) ?? [];
    if (have.includes(name)) return;
    upsertSearchAttributes([{ key: PgOperator, value: [...have, name] }]);
  }

  /** A snapshot of where the runbook is (what the `progress` query returns). */
  progress(): RunbookProgress {
    return { ...this.state, steps: this.state.steps.map((s) => ({ ...s })) };
  }

  /** Runs one named step. Its failure fails the runbook (after recording it) unless `attempts` > 1. */
  async step<T>(name: string, fn: () => Promise<T>, opts: StepOptions = {}): Promise<T> {
    await this.checkpoint();
    const s = this.entry(name, 'step');
    s.node = opts.node;
    s.startedAt = now();
    if (opts.compensate) {
      this.compensations.push({ step: s, fn: opts.compensate });
      s.compensation = 'registered';
    }
    this.enter(s);
    const attempts = Math.max(1, opts.attempts ?? 1);
    for (;;) {
      s.attempt++;
      s.status = 'running';
      try {
        const result = await fn();
        s.status = 'completed';
        s.error = undefined;
        this.leave(s);
        return result;
      } catch (err) {
        s.error = errorMessage(err);
        if (isCancellation(err) || s.attempt >= attempts) {
          s.status = isCancellation(err) ? 'cancelled' : 'failed';
          this.leave(s);
          throw err;
        }
      }
      log.warn(`step ${name} failed (attempt ${s.attempt}/${attempts}), retrying`, { error: s.error });
      try {
        await sleep(opts.retryDelay ?? '10s', {
          summary: `retry step ${name} (attempt ${s.attempt + 1}/${attempts})`,
        });
      } catch (err) {
        s.status = 'cancelled';
        this.leave(s);
        throw err;
      }
    }
  }

  /**
   * Waits for an approval gate to be decided with the `approve` update. Approve → returns the
   * decision; reject → ApprovalRejected; no decision within `timeout` → ApprovalTimedOut. Either
   * failure ends the runbook without running anything further (no compensation either: a rejected
   * gate leaves the cluster as the steps before it left it, for the operator to look at).
   */
  async approval(gate: string, opts: ApprovalOptions): Promise<ApproveResult> {
    await this.checkpoint();
    const g = this.entry(gate, 'gate');
    const timeoutMs = msToNumber(opts.timeout);
    g.status = 'waiting';
    g.attempt = 1;
    g.startedAt = now();
    g.deadline = new Date(Date.now() + timeoutMs).toISOString();
    this.enter(g);
    this.state.state = 'waiting-approval';
    this.waitingGate = g;
    this.showDetails();
    void this.notify({ kind: 'approval-needed', gate, deadline: g.deadline });
    let decided: boolean;
    try {
      decided = await condition(() => g.decision !== undefined, timeoutMs, {
        summary: `gate ${gate}: waiting for pgha approve until ${g.deadline}`,
      });
    } catch (err) {
      if (isCancellation(err)) g.status = 'cancelled';
      throw err;
    } finally {
      this.waitingGate = undefined;
      this.state.state = 'running';
      this.leave(g);
    }
    if (!decided || !g.decision) {
      g.status = 'timed-out';
      throw ApplicationFailure.create({
        type: FailureType.ApprovalTimedOut,
        nonRetryable: true,
        message: `approval gate ${gate} timed out: nobody decided within ${String(opts.timeout)}; nothing further was done`,
      });
    }
    const d = g.decision;
    if (d.decision === 'reject') {
      g.status = 'rejected';
      throw ApplicationFailure.create({
        type: FailureType.ApprovalRejected,
        nonRetryable: true,
        message: `approval gate ${gate} rejected by ${d.approver}${d.reason ? `: ${d.reason}` : ''}; nothing further was done`,
      });
    }
    g.status = 'approved';
    return { gate, decision: d.decision, approver: d.approver, at: d.at };
  }

  /** Runs the runbook body under the cluster lock; see the module comment for what it guarantees. */
  async run<T>(body: (rb: Runbook) => Promise<T>): Promise<T> {
    upsertSearchAttributes([
      { key: PgCluster, value: this.cluster },
      { key: PgOperation, value: this.operation },
    ]);
    try {
      if (this.lockEnabled) await this.acquireLock();
      void this.notify({ kind: 'started' });
      const result = await body(this);
      this.finish('completed', 'all steps completed');
      return result;
    } catch (err) {
      if (isCancellation(err)) {
        await CancellationScope.nonCancellable(() => this.compensate());
        const undone = this.compensations.filter((c) => c.step.compensation === 'completed').length;
        const failed = this.compensations.length - undone;
        this.finish(
          'cancelled',
          `cancelled; ${undone} step(s) compensated${failed ? `, ${failed} compensation(s) FAILED` : ''}`,
        );
      } else if (err instanceof ApplicationFailure && err.type === FailureType.ApprovalRejected) {
        this.finish('rejected', err.message);
      } else if (
        err instanceof ApplicationFailure &&
        (err.type === FailureType.ApprovalTimedOut || err.type === FailureType.PauseTimedOut)
      ) {
        this.finish('timed-out', err.message);
      } else {
        this.finish('failed', errorMessage(err), failureTypeOf(err));
      }
      throw err;
    } finally {
      await CancellationScope.nonCancellable(async () => {
        await this.releaseLock();
        await this.notifyEnd();
        await condition(allHandlersFinished);
      });
    }
  }

  // ---- internals ----

  /**
   * Tells the webhook (when the inventory has one) about the run; resolves when delivered or given
   * up (a warning in the log): a notification never fails or holds up the runbook.
   */
  private notify(e: Pick<RunEvent, 'kind'> & Partial<RunEvent>): Promise<void> {
    if (!this.webhook) return Promise.resolve();
    const info = workflowInfo();
    const event: RunEvent = {
      cluster: this.cluster,
      operation: this.operation,
      workflowId: info.workflowId,
      runId: info.runId,
      operators: info.typedSearchAttributes.get(PgOperator) ?? [],
      startedAt: this.state.startedAt,
      ...e,
    };
    const sent = notifier.notifyRun(`${e.kind} → notify.webhook`, { webhook: this.webhook, event }).then(
      () => undefined,
      (err: unknown) => log.warn(`notification ${e.kind} not delivered`, { error: errorMessage(err) }),
    );
    this.notifications.push(sent);
    return sent;
  }

  /** The end of the run, told after every earlier notification (waited for, never failing). */
  private async notifyEnd(): Promise<void> {
    if (!this.webhook) return;
    await Promise.all(this.notifications);
    const p = this.state;
    const kind: RunEventKind =
      p.state === 'failed' ? (p.result === 'refused' ? 'refused' : 'failed') : (p.state as RunEventKind);
    const ended = p.endedAt ? Date.parse(p.endedAt) : Date.now();
    await this.notify({
      kind,
      outcome: p.outcome,
      failureType: p.failureType,
      durationMs: ended - Date.parse(p.startedAt),
    });
  }

  /** Honours a pause before a step or gate starts. */
  private async checkpoint(): Promise<void> {
    if (!this.pauseRequest) return;
    this.state.state = 'paused';
    const { by, reason } = this.pauseRequest;
    log.info('runbook paused', { by, reason });
    this.showDetails();
    void this.notify({ kind: 'paused', by, reason });
    const summary = `paused by ${by ?? 'someone'}: waiting for pgha resume`;
    if (!(await condition(() => this.pauseRequest === undefined, this.maxPause, { summary }))) {
      throw ApplicationFailure.create({
        type: FailureType.PauseTimedOut,
        nonRetryable: true,
        message: `paused by ${by ?? 'someone'} for longer than ${String(this.maxPause)} without a resume; nothing further was done`,
      });
    }
    this.state.state = 'running';
  }

  /** The plan entry for this step (first pending one of that name), or a new entry. */
  private entry(name: string, kind: 'step' | 'gate'): StepProgress {
    const planned = this.state.steps.find(
      (s) => s.name === name && s.kind === kind && s.status === 'pending',
    );
    if (planned) return planned;
    const taken = this.state.steps.filter((s) => s.name === name || s.name.startsWith(`${name}#`)).length;
    const fresh: StepProgress = {
      name: taken ? `${name}#${taken + 1}` : name,
      kind,
      status: 'pending',
      attempt: 0,
    };
    this.state.steps.push(fresh);
    return fresh;
  }

  private enter(s: StepProgress): void {
    this.state.current = s.name;
    upsertSearchAttributes([
      { key: PgStep, value: s.name },
      { key: PgNode, value: s.node ?? null },
    ]);
    this.showDetails();
  }

  private leave(s: StepProgress): void {
    s.endedAt = now();
    if (s.kind === 'step' && s.startedAt)
      recordStep(
        this.cluster,
        this.operation,
        s.name,
        s.status,
        Date.parse(s.endedAt) - Date.parse(s.startedAt),
      );
    if (this.state.current === s.name) this.state.current = undefined;
  }

  private finish(
    state: Exclude<RunbookState, 'running' | 'paused' | 'waiting-approval' | 'compensating'>,
    outcome: string,
    failureType?: string,
  ): void {
    this.state.state = state;
    this.state.outcome = outcome;
    this.state.endedAt = now();
    this.state.current = undefined;
    this.state.failureType = failureType;
    this.state.result =
      state === 'completed' ? 'succeeded' : state === 'failed' ? failureOutcome(failureType) : state;
    recordOutcome(this.state.result);
    this.showDetails();
  }

  private validateApprove(input: ApproveInput): void {
    if (typeof input !== 'object' || input === null) {
      throw new Error('approve needs { gate, approver, decision?, reason? }');
    }
    if (typeof input.approver !== 'string' || input.approver.trim() === '') {
      throw new Error('approver is empty: say who decides (pgha approve --by NAME)');
    }
    if (input.decision !== undefined && input.decision !== 'approve' && input.decision !== 'reject') {
      throw new Error(`decision ${JSON.stringify(input.decision)} is invalid: use approve or reject`);
    }
    const gates = this.state.steps.filter((s) => s.kind === 'gate');
    const gate = gates.find((g) => g.name === input.gate);
    if (!gate) {
      const known = gates.map((g) => g.name).join(', ') || '(none)';
      throw new Error(`unknown gate ${JSON.stringify(input.gate)}: this runbook's gates are ${known}`);
    }
    if (this.waitingGate !== gate) {
      throw new Error(
        `gate ${input.gate} is not waiting for a decision (it is ${gate.status}` +
          `${gate.decision ? ` by ${gate.decision.approver}` : ''}); see pgha watch`,
      );
    }
  }

  private decide(input: ApproveInput): ApproveResult {
    const g = this.waitingGate;
    // Two updates validated in the same workflow task: the second finds the gate already decided.
    if (!g || g.name !== input.gate || g.decision) {
      throw ApplicationFailure.nonRetryable(
        `gate ${input.gate} was already decided`,
        Failures.GateAlreadyDecided,
      );
    }
    const decision = input.decision ?? 'approve';
    g.decision = { decision, approver: input.approver.trim(), reason: input.reason, at: now() };
    this.noteOperator(g.decision.approver);
    log.info(`approval gate ${g.name}: ${decision} by ${g.decision.approver}`, { reason: input.reason });
    return { gate: g.name, decision, approver: g.decision.approver, at: g.decision.at };
  }

  private async compensate(): Promise<void> {
    this.state.state = 'compensating';
    for (const c of [...this.compensations].reverse()) {
      c.step.compensation = 'running';
      this.state.current = `undo ${c.step.name}`;
      try {
        await c.fn();
        c.step.compensation = 'completed';
      } catch (err) {
        c.step.compensation = 'failed';
        c.step.compensationError = errorMessage(err);
        log.error(`compensation of step ${c.step.name} failed`, { error: c.step.compensationError });
      }
    }
    this.state.current = undefined;
  }

  private async acquireLock(): Promise<void> {
    const workflowId = lockWorkflowId(this.cluster);
    this.state.lock = { workflowId, state: 'acquiring' };
    try {
      // Started outside the runbook's cancellation scope: cancelling the runbook must not release
      // the lock before its compensations have run.
      this.lockHandle = await CancellationScope.nonCancellable(() =>
        startChild(clusterLock, {
          workflowId,
          args: [{ cluster: this.cluster, holder: workflowInfo().workflowId, operation: this.operation }],
          parentClosePolicy: ParentClosePolicy.TERMINATE,
        }),
      );
      this.state.lock.state = 'held';
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        this.state.lock.state = 'busy';
        throw ApplicationFailure.create({
          type: FailureType.ClusterBusy,
          nonRetryable: true,
          message:
            `cluster ${this.cluster} is busy: another pgha operation holds its lock (workflow ${workflowId}); ` +
            `see pgha runs --cluster ${this.cluster}, then wait for it or cancel it`,
        });
      }
      throw err;
    }
  }

  private async releaseLock(): Promise<void> {
    const handle = this.lockHandle;
    if (!handle || !this.state.lock) return;
    try {
      await handle.signal(release);
      await handle.result();
    } catch (err) {
      // Already gone (terminated by hand): nothing left to release.
      log.warn('cluster lock was already gone when released', { error: errorMessage(err) });
    }
    this.state.lock.state = 'released';
  }
}

/** Notifications: a POST each, retried for a minute at most; their failure never fails the runbook. */
const notifier = summarized<Activities>('notify');

/** Runs `body` as a runbook: `return runbook({ cluster, operation, plan }, async (rb) => { ... })`. */
export function runbook<T>(opts: RunbookOptions, body: (rb: Runbook) => Promise<T>): Promise<T> {
  return new Runbook(opts).run(body);
}
