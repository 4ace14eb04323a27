/**
 * `pgha upgrade patroni --cluster FILE --to 4.1.5 [--dry-run] [--approve]`: the upgradePatroni
 * runbook with live step progress. `upgradePatroniCommand` does the work (the `upgrade` command
 * wires it under `upgrade patroni`); `register` adds a stand-alone `upgrade-patroni` command until
 * then. A malformed version is refused here before anything starts (exit status 2).
 */
import type { Duration } from '@temporalio/common';
import type { Command } from 'commander';
import { isPatroniVersion } from '../../runbooks/patroni-versions';
import type { UpgradePatroniReport, upgradePatroni } from '../../workflows/upgrade-patroni';
import { withClient } from '../connection';
import { inventoryInput } from '../inventory-input';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';
import { upgradeCommand } from './upgrade';

export interface UpgradePatroniOptions {
  cluster: string;
  to: string;
  dryRun?: boolean;
  approve?: boolean;
  approvalTimeout?: string;
  wait?: boolean;
}

/** The report as an operator reads it. */
export function describeUpgradePatroni(r: UpgradePatroniReport): string {
  const lines: string[] = [];
  if (r.outcome === 'already-at-target') {
    lines.push(`cluster ${r.cluster}: every member already runs Patroni ${r.to}; nothing was done`);
    return lines.join('\n');
  }
  lines.push(
    r.outcome === 'dry-run'
      ? `dry run: Patroni of cluster ${r.cluster} to ${r.to} (leader ${r.plan.leader}); nothing was touched. The plan:`
      : `Patroni of cluster ${r.cluster} is now ${r.to} on every member. What was done:`,
  );
  if (r.outcome === 'dry-run') r.plan.steps.forEach((s, i) => lines.push(`  ${i + 1}. ${s}`));
  for (const m of r.members) {
    lines.push(
      `  ${m.member}: ${m.action === 'already' ? `already on ${m.to}` : `${m.from ?? '?'} -> ${m.to}`} in ${(m.tookMs / 1000).toFixed(1)} s, ` +
        `PostgreSQL ${m.postgresRestarted ? 'RESTARTED' : 'kept running'}`,
    );
  }
  if (r.outcome === 'upgraded')
    lines.push(`set versions.patroni: '${r.to}' in the inventory so that later deploys keep it`);
  return lines.join('\n');
}

export async function upgradePatroniCommand(o: UpgradePatroniOptions): Promise<void> {
  if (!isPatroniVersion(o.to)) {
    console.error(
      `pgha: --to ${JSON.stringify(o.to)} is not a Patroni version: use major.minor.patch, e.g. 4.1.5`,
    );
    process.exitCode = 2;
    return;
  }
  await withClient(async (client) => {
    const { input, inventory } = await inventoryInput(o.cluster);
    const handle = await startRunbook<typeof upgradePatroni>(client, {
      workflow: 'upgradePatroni',
      args: [
        {
          inventory: input,
          to: o.to,
          dryRun: o.dryRun,
          approve: o.approve,
          approvalTimeout: o.approve ? ((o.approvalTimeout ?? '1h') as Duration) : undefined,
        },
      ],
      cluster: inventory.cluster,
      operation: 'upgrade-patroni',
    });
    console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
    if (o.wait === false) return;
    const done = await watchRun(client, handle);
    if (done.status === 'COMPLETED') console.log(describeUpgradePatroni(await handle.result()));
  });
}

/** Options of `upgrade patroni` (and of the stand-alone `upgrade-patroni`). */
export function patroniOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .requiredOption('--to <version>', 'the Patroni version, e.g. 4.1.5 (its wheels in install.patroni.dir)')
    .option('--dry-run', 'print the plan per node after the pre-check; touch nothing')
    .option('--approve', 'stop at gate `upgrade` until `pgha approve <id> --gate upgrade --by NAME`')
    .option('--approval-timeout <duration>', 'how long the gate waits for a decision', '1h')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)');
}

export function register(program: Command): void {
  patroniOptions(
    upgradeCommand(program)
      .command('patroni')
      .description(
        'Patroni to another version without stopping PostgreSQL (pause, one member at a time, resume)',
      ),
  ).action((o: UpgradePatroniOptions) => upgradePatroniCommand(o));
  patroniOptions(
    program
      .command('upgrade-patroni', { hidden: true })
      .description(
        'Patroni to another version without stopping PostgreSQL (pause, one member at a time, resume)',
      ),
  ).action((o: UpgradePatroniOptions) => upgradePatroniCommand(o));
}
