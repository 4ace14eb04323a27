/**
 * What a runbook's `--dry-run` returns: its read-only pre-checks ran, then the ordered plan per
 * node it would carry out; nothing was touched (no gate, no lock-holding wait, no activity that
 * changes anything). Deterministic and pure: workflows build it from what the pre-checks saw.
 */
import { patched } from '@temporalio/workflow';
import { Patches } from './patches';

export interface DryRunReport {
  outcome: 'dry-run';
  cluster: string;
  operation: string;
  /** One line per step, in order, each naming the node(s) it acts on. */
  plan: string[];
}

export function dryRunReport(
  cluster: string,
  operation: string,
  plan: (string | undefined | false)[],
): DryRunReport {
  return { outcome: 'dry-run', cluster, operation, plan: plan.filter((s): s is string => Boolean(s)) };
}

export const isDryRun = (r: unknown): r is DryRunReport =>
  typeof r === 'object' && r !== null && (r as { outcome?: unknown }).outcome === 'dry-run';

/** The plan as the CLI prints it: one numbered line per step. */
export function describeDryRun(r: DryRunReport): string {
  return [
    `dry run of ${r.operation} on cluster ${r.cluster}: the plan, in order (nothing was touched)`,
    ...r.plan.map((l, i) => `  ${i + 1}. ${l}`),
  ].join('\n');
}

/**
 * Whether this run is a dry run: asked for (input.dryRun) and in a run that knows dry runs. Only a
 * run asked for one evaluates the patch, so older histories (never carrying dryRun) replay unchanged.
 */
export function dryRunning(input: { dryRun?: boolean }): boolean {
  return input.dryRun === true && patched(Patches.dryRunPlans);
}

/** A result printer that prints a dry run's plan, and a real run's report as `describe` does. */
export function orPlan<T>(describe: (r: T) => string): (r: T | DryRunReport) => string {
  return (r) => (isDryRun(r) ? describeDryRun(r) : describe(r));
}

/** A real run's report (a caller that did not ask for a dry run): the dry-run branch excluded by type. */
export function notDryRun<T>(r: T | DryRunReport): T {
  if (isDryRun(r)) throw new Error(`expected a real run's report, got a dry run's plan for ${r.operation}`);
  return r;
}
