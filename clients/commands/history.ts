/**
 * `pgha history --cluster F [--since 7d] [--json]`: what was done to a cluster, by whom, and how it
 * ended — from Temporal's visibility (PgCluster, PgOperation, PgOperator, PgOutcome), one line a run.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Client } from '@temporalio/client';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { parse } from 'yaml';
import { PgOperation, PgOperator, PgOutcome, runbookWorkflowId } from '../../workflows/messages';
import { withClient } from '../connection';

export type HistoryOutcome =
  'running' | 'completed' | 'refused' | 'failed' | 'cancelled' | 'rejected' | 'timed-out' | 'terminated';

export interface HistoryEntry {
  startedAt: string;
  closedAt?: string;
  operation: string;
  /** Who started it first, then who approved, rejected, paused, resumed or cancelled it. */
  operators: string[];
  outcome: HistoryOutcome;
  durationMs?: number;
  workflowId: string;
  runId: string;
}

/** How a run ended, in the words of `pgha history`: the workflow status refined by PgOutcome. */
export function historyOutcome(status: string, pgOutcome: string | undefined): HistoryOutcome {
  switch (status) {
    case 'RUNNING':
    case 'CONTINUED_AS_NEW':
      return 'running';
    case 'COMPLETED':
      return 'completed';
    case 'CANCELLED':
    case 'CANCELED':
      return 'cancelled';
    case 'TERMINATED':
      return 'terminated';
    case 'TIMED_OUT':
      return 'timed-out';
    default:
      if (pgOutcome === 'refused' || pgOutcome === 'rejected' || pgOutcome === 'timed-out') return pgOutcome;
      if (pgOutcome === 'cancelled') return 'cancelled';
      return 'failed';
  }
}

/** `--since`: an ISO time, or an age such as 30m, 24h, 7d. */
export function parseSince(since: string, now = Date.now()): Date {
  const m = /^(\d+)\s*([mhd])$/.exec(since.trim());
  if (m) return new Date(now - Number(m[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'm']);
  const t = Date.parse(since);
  if (Number.isNaN(t)) {
    throw new Error(
      `--since ${JSON.stringify(since)} is not a time: use ISO 8601 (2026-11-26T23:00:00Z) or an age (30m, 24h, 7d)`,
    );
  }
  return new Date(t);
}

/** `--cluster` names a cluster, or an inventory file whose `cluster:` is read. */
export function clusterName(arg: string): string {
  let name = arg;
  if (/\.ya?ml$/i.test(arg)) {
    if (!existsSync(arg)) throw new Error(`--cluster ${arg}: no such inventory file`);
    const doc = parse(readFileSync(arg, 'utf8')) as { cluster?: unknown } | null;
    if (typeof doc?.cluster !== 'string') throw new Error(`--cluster ${arg}: the file has no cluster: name`);
    name = doc.cluster;
  }
  runbookWorkflowId('x', name); // a valid name (letters, digits, . _ -) before it goes into a query
  return name;
}

export async function clusterHistory(
  client: Client,
  cluster: string,
  opts: { since?: Date; limit?: number } = {},
): Promise<HistoryEntry[]> {
  const where = [`PgCluster = '${cluster}'`, 'PgOperation IS NOT NULL'];
  if (opts.since) where.push(`StartTime >= '${opts.since.toISOString()}'`);
  const out: HistoryEntry[] = [];
  for await (const wf of client.workflow.list({ query: where.join(' AND ') })) {
    const closed = wf.closeTime ?? undefined;
    out.push({
      startedAt: wf.startTime.toISOString(),
      closedAt: closed?.toISOString(),
      operation: wf.typedSearchAttributes.get(PgOperation) ?? wf.type,
      operators: wf.typedSearchAttributes.get(PgOperator) ?? [],
      outcome: historyOutcome(wf.status.name, wf.typedSearchAttributes.get(PgOutcome)),
      durationMs: closed ? closed.getTime() - wf.startTime.getTime() : undefined,
      workflowId: wf.workflowId,
      runId: wf.runId,
    });
    if (out.length >= (opts.limit ?? 100)) break;
  }
  return out;
}

export function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return '';
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 100) / 10;
  if (s < 120) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 120 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function historyTable(entries: HistoryEntry[]): string {
  const t = new Table({
    style: { head: [], border: [] },
    head: ['started', 'operation', 'by', 'outcome', 'duration', 'workflow id', 'run id'],
  });
  for (const e of entries) {
    t.push([
      e.startedAt.replace('T', ' ').slice(0, 19),
      e.operation,
      e.operators.join(', '),
      e.outcome,
      formatDuration(e.durationMs),
      e.workflowId,
      e.runId,
    ]);
  }
  return t.toString();
}

export function register(program: Command): void {
  program
    .command('history')
    .description('what was done to a cluster: when, operation, who, outcome, duration, workflow and run id')
    .requiredOption('--cluster <name|file>', 'the cluster name, or its inventory YAML')
    .option('--since <time>', 'only runs started since (ISO 8601, or an age: 30m, 24h, 7d)')
    .option('--limit <n>', 'at most this many (newest first)', '100')
    .option('--json', 'print JSON (one array)')
    .action((o: { cluster: string; since?: string; limit: string; json?: boolean }) =>
      withClient(async (client) => {
        const cluster = clusterName(o.cluster);
        const entries = await clusterHistory(client, cluster, {
          since: o.since === undefined ? undefined : parseSince(o.since),
          limit: Number(o.limit),
        });
        if (o.json) console.log(JSON.stringify(entries, null, 2));
        else console.log(entries.length ? historyTable(entries) : `no pgha runs on cluster ${cluster}`);
      }),
    );
}
