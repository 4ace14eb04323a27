/**
 * Notifications: a Slack-compatible incoming webhook (JSON POST with `text`; Mattermost, Rocket.Chat
 * and most chat bridges take the same), the one module that talks to it. The runbook machinery
 * (workflows/steps.ts) calls `notifyRun` when a run starts, waits for an approval, pauses and ends.
 *
 * The URL is a secret (a Slack webhook's path is its key): the workflow passes only the inventory's
 * reference (`notify.webhook`), resolved here at the last moment; no error, log or result carries
 * the URL or any part of it.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { Failures } from '../runbooks/failures';
import { resolveSecretRef } from './secrets';

/** What happened to a run. The end kinds mirror RunbookState (completed, failed, ...) and PgOutcome (refused). */
export type RunEventKind =
  | 'started'
  | 'approval-needed'
  | 'paused'
  | 'completed'
  | 'refused'
  | 'failed'
  | 'rejected'
  | 'timed-out'
  | 'cancelled';

export interface RunEvent {
  kind: RunEventKind;
  cluster: string;
  operation: string;
  workflowId: string;
  runId: string;
  /** Who started the run, then everyone who acted on it (PgOperator). */
  operators: string[];
  /** The gate waiting for a decision, and until when (approval-needed). */
  gate?: string;
  deadline?: string;
  /** Who paused, and why (paused). */
  by?: string;
  reason?: string;
  /** How the run ended, in the runbook's words, and its failure type (end kinds). */
  outcome?: string;
  failureType?: string;
  /** When the run started and, for the end kinds, how long it took. */
  startedAt: string;
  durationMs?: number;
}

export interface NotifyArgs {
  /** The inventory's notify.webhook: a reference (env:NAME, file:PATH), never the URL. */
  webhook: string;
  event: RunEvent;
}

/** The body POSTed: `text` for the chat, the event itself under `pgha` for machines. */
export interface WebhookMessage {
  text: string;
  pgha: RunEvent;
}

const ICON: Record<RunEventKind, string> = {
  started: ':arrow_forward:',
  'approval-needed': ':raised_hand:',
  paused: ':double_vertical_bar:',
  completed: ':white_check_mark:',
  refused: ':no_entry:',
  failed: ':x:',
  rejected: ':no_entry_sign:',
  'timed-out': ':hourglass:',
  cancelled: ':heavy_multiplication_x:',
};

/** The chat message of an event (pure). */
export function webhookMessage(e: RunEvent): WebhookMessage {
  const run = `pgha *${e.operation}* on cluster *${e.cluster}* (\`${e.workflowId}\`)`;
  const who = e.operators.length ? `, started by ${e.operators[0]}` : '';
  let what: string;
  switch (e.kind) {
    case 'started':
      what = `started${who}`;
      break;
    case 'approval-needed':
      what = `waits at gate *${e.gate ?? '?'}* until ${e.deadline ?? '?'}: \`pgha approve ${e.workflowId} --gate ${e.gate ?? 'GATE'} --by NAME\``;
      break;
    case 'paused':
      what = `paused by ${e.by ?? 'someone'}${e.reason ? `: ${e.reason}` : ''}; \`pgha resume ${e.workflowId}\` goes on`;
      break;
    default:
      what = `${e.kind}${e.durationMs !== undefined ? ` after ${Math.round(e.durationMs / 1000)} s` : ''}${e.outcome ? `: ${e.outcome}` : ''}`;
  }
  return { text: `${ICON[e.kind]} ${run} ${what}`, pgha: e };
}

export interface NotifyDeps {
  /** The HTTP client (default: Node's fetch). */
  fetch?: typeof fetch;
  /** One POST's bound (default 10 s). */
  timeoutMs?: number;
}

/**
 * POSTs the message. A refused request (4xx other than 408/429) is final; anything else is thrown
 * for the activity's retry policy. Errors say what went wrong, never the URL.
 */
export async function postWebhook(deps: NotifyDeps, args: NotifyArgs, signal?: AbortSignal): Promise<number> {
  let url: URL;
  try {
    url = new URL(await resolveSecretRef(args.webhook));
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('not http(s)');
  } catch (err) {
    const why = err instanceof Error && err.name === 'SecretRefError' ? err.message : 'not an http(s) URL';
    throw ApplicationFailure.nonRetryable(
      `notify.webhook (${args.webhook}): ${why}; write the webhook's URL there (https://...)`,
      Failures.NotifyWebhookInvalid,
    );
  }
  const timeout = AbortSignal.timeout(deps.timeoutMs ?? 10_000);
  let res: Response;
  try {
    res = await (deps.fetch ?? fetch)(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(webhookMessage(args.event)),
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      redirect: 'error',
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    const what = timeout.aborted ? 'no answer within the timeout' : (cause ?? (err as Error).name);
    throw new Error(`notify.webhook (${args.webhook}) unreachable: ${what}`);
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.ok) return res.status;
  const message = `notify.webhook (${args.webhook}) answered HTTP ${res.status}`;
  if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429)
    throw ApplicationFailure.nonRetryable(
      `${message}: check the webhook (revoked?)`,
      Failures.NotifyWebhookRefused,
    );
  throw new Error(message);
}

export function createNotifyActivities(deps: NotifyDeps = {}) {
  return {
    /** Tells the cluster's webhook what happened to a run; returns the HTTP status. */
    async notifyRun(args: NotifyArgs): Promise<number> {
      return postWebhook(deps, args, Context.current().cancellationSignal);
    },
  };
}
