/**
 * What a runbook's `--dry-run` returns: its read-only pre-checks ran, then the ordered plan per
 * node it would carry out; nothing was touched (no gate, no lock-holding wait, no activity that
 * changes anything). Deterministic and pure: workflows build it from what the pre-checks saw.
 */
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
