/**
 * The messages every runbook answers, and the search attributes every runbook sets. Workflows,
 * the `pgha` CLI and the tests import these same constants, so a name can never drift.
 *
 *   progress  query   where the runbook is: each step's status, times, attempt, error
 *   approve   update  decide an approval gate (validated: unknown gate or empty approver → rejected)
 *   pause     signal  stop before the next step (the step in flight finishes)
 *   resume    signal  carry on
 *   release   signal  (cluster lock only) the holder is done
 */
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { Failures, REFUSAL_TYPES } from '../runbooks/failures';

// ---- search attributes (Keyword; registered by `npm run server`) ----
// They are NOT encrypted by the payload codec: never put a secret in one.
export const PgCluster = defineSearchAttributeKey('PgCluster', SearchAttributeType.KEYWORD);
export const PgOperation = defineSearchAttributeKey('PgOperation', SearchAttributeType.KEYWORD);
export const PgNode = defineSearchAttributeKey('PgNode', SearchAttributeType.KEYWORD);
export const PgStep = defineSearchAttributeKey('PgStep', SearchAttributeType.KEYWORD);
/** How a run ended (upserted when it ends): see RunOutcome. Lets `pgha runs` and the Web UI tell a refusal from a failure. */
export const PgOutcome = defineSearchAttributeKey('PgOutcome', SearchAttributeType.KEYWORD);
/**
 * Who acted on the run (KeywordList): the operator who started it (set at start), then everyone who
 * approved, rejected, paused, resumed or cancelled it, in order, without repeats. `PgOperator = 'alice'`
 * finds every run alice touched.
 */
export const PgOperator = defineSearchAttributeKey('PgOperator', SearchAttributeType.KEYWORD_LIST);
export const searchAttributeKeys = [PgCluster, PgOperation, PgNode, PgStep, PgOutcome, PgOperator];

/**
 * How a run ended, as the PgOutcome search attribute: `refused` when a check said no before anything
 * was changed (a failure type in REFUSAL_TYPES), `failed` for any other failure; the others as the
 * runbook's final state says.
 */
export type RunOutcome = 'succeeded' | 'refused' | 'failed' | 'cancelled' | 'rejected' | 'timed-out';

/** The outcome of a run that ended with a failure of this type (undefined: not an ApplicationFailure). */
export function failureOutcome(type: string | null | undefined): 'refused' | 'failed' {
  return type && (REFUSAL_TYPES as readonly string[]).includes(type) ? 'refused' : 'failed';
}

// ---- progress ----
export type StepStatus = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled';
export type GateStatus = 'pending' | 'waiting' | 'approved' | 'rejected' | 'timed-out' | 'cancelled';
export type CompensationStatus = 'registered' | 'running' | 'completed' | 'failed';

export interface StepProgress {
  name: string;
  kind: 'step' | 'gate';
  status: StepStatus | GateStatus;
  /** The node the step acts on (also the PgNode search attribute while it runs). */
  node?: string;
  /** ISO times (workflow time). */
  startedAt?: string;
  endedAt?: string;
  /** How many times the runbook ran this step (activity retries inside one attempt: `pgha watch`). */
  attempt: number;
  /** Why it failed (the failure's message; activities never put secrets into errors). */
  error?: string;
  /** For a gate: who decided, when, why; and until when it waits. */
  decision?: { decision: 'approve' | 'reject'; approver: string; reason?: string; at: string };
  deadline?: string;
  /** Undo registered with the step; runs (in reverse step order) when the runbook is cancelled. */
  compensation?: CompensationStatus;
  compensationError?: string;
}

export type RunbookState =
  | 'running'
  | 'paused'
  | 'waiting-approval'
  | 'compensating'
  | 'completed'
  | 'failed'
  | 'cancelled'
  | 'rejected'
  | 'timed-out';

export interface RunbookProgress {
  cluster: string;
  operation: string;
  workflowId: string;
  state: RunbookState;
  /** The step (or gate) in flight, if any. */
  current?: string;
  /** Set while a pause is requested; honoured before the next step. */
  paused?: { by?: string; reason?: string; at: string };
  /** The cluster lock this run holds (a child workflow), when it takes one. */
  lock?: { workflowId: string; state: 'acquiring' | 'held' | 'released' | 'busy' };
  steps: StepProgress[];
  startedAt: string;
  endedAt?: string;
  /** How the runbook ended, in words. */
  outcome?: string;
  /** How the runbook ended, as the PgOutcome search attribute (set when it ends). */
  result?: RunOutcome;
  /** The failure type it ended with, when it failed (e.g. SwitchoverRefused). */
  failureType?: string;
}

export const progress = defineQuery<RunbookProgress>('progress');

// ---- approval ----
export interface ApproveInput {
  gate: string;
  /** Who decides: required, recorded in history and progress. */
  approver: string;
  /** Default 'approve'. */
  decision?: 'approve' | 'reject';
  reason?: string;
}
export interface ApproveResult {
  gate: string;
  decision: 'approve' | 'reject';
  approver: string;
  at: string;
}
export const approve = defineUpdate<ApproveResult, [ApproveInput]>('approve');

// ---- pause / resume ----
export interface PauseInput {
  by?: string;
  reason?: string;
}
export const pause = defineSignal<[PauseInput?]>('pause');
export const resume = defineSignal<[PauseInput?]>('resume');

// ---- who acted ----
/** An operator's action that carries no input of its own (cancel): sent just before it, for the record. */
export interface OperatorAction {
  by: string;
  action: 'cancel';
  reason?: string;
}
export const operatorAction = defineSignal<[OperatorAction]>('operatorAction');

// ---- cluster lock ----
export const release = defineSignal('release');
export interface ClusterLockInput {
  cluster: string;
  /** The workflow id of the runbook holding the lock. */
  holder: string;
  operation: string;
}
export const lockHolder = defineQuery<ClusterLockInput>('holder');
export const lockWorkflowId = (cluster: string) => `pgha-lock-${cluster}`;

/**
 * Operations that only read and run beside others (their runbooks use `lock: false`): a running one
 * does not make a cluster busy.
 */
export const sharedOperations: readonly string[] = [
  'status',
  // the guardian watches beside every runbook (it takes the lock only while it routes a failover)
  'guardian',
  'failover-observed',
];

// ---- how a runbook can end other than by success (ApplicationFailure types) ----
// (the names themselves live in runbooks/failures.ts; this is the subset a runbook ends with)
export const FailureType = {
  /** An approval gate was rejected: nothing further was touched. */
  ApprovalRejected: Failures.ApprovalRejected,
  /** Nobody decided an approval gate in time: nothing further was touched. */
  ApprovalTimedOut: Failures.ApprovalTimedOut,
  /** A pause lasted longer than the runbook's maxPause: nothing further was touched. */
  PauseTimedOut: Failures.PauseTimedOut,
  /** Another pgha operation holds the cluster lock. */
  ClusterBusy: Failures.ClusterBusy,
} as const;

/** The workflow id of a runbook: `<operation>-<cluster>`, plus a suffix where an operation repeats. */
export function runbookWorkflowId(operation: string, cluster: string, suffix?: string): string {
  for (const [field, v] of [
    ['operation', operation],
    ['cluster', cluster],
    ['suffix', suffix ?? 'x'],
  ] as const) {
    if (!/^[a-z0-9][a-z0-9._-]*$/i.test(v)) {
      throw new TypeError(
        `${field} ${JSON.stringify(v)} is not a valid id part: use letters, digits, '.', '_' or '-'`,
      );
    }
  }
  return suffix ? `${operation}-${cluster}-${suffix}` : `${operation}-${cluster}`;
}
