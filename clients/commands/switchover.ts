/**
 * `pgha switchover --cluster FILE [--to pg102] [--at TIME] [--approve]` and
 * `pgha failover --cluster FILE --to pgX [--force]`: the switchover / failover runbooks with live
 * step progress, then a one-paragraph report (who leads now, timeline, the hand-off timings).
 */
import type { Duration } from '@temporalio/common';
import type { Command } from 'commander';
import type { HandoffReport, failover, switchover } from '../../workflows/switchover';
import { scheduleProblem } from '../../workflows/schedule';
import { withClient } from '../connection';
import { inventoryInput } from '../inventory-input';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';

/** The report as a few lines an operator reads at a glance. */
export function describeReport(r: HandoffReport): string {
  const t = r.timings;
  const ms = (v: number | undefined) => (v === undefined ? '-' : `${v} ms`);
  const lines = [
    `${r.action} ${r.outcome === 'already-done' ? '(found already done on resume) ' : ''}` +
      `${r.from ?? '(no leader)'} → ${r.to}${r.chosen ? ' (chosen by pgha: least lag)' : ''}; ` +
      `timeline ${r.timelineBefore} → ${r.timelineAfter}`,
    `hand-off after the POST: old leader cut ${ms(t.oldLeaderCutMs)}, ${r.to} /primary 200 ${ms(t.candidatePrimary200Ms)}, ` +
      `writable ${ms(t.candidateWritableMs)}, HAProxy routed ${ms(t.routedMs)}, Patroni answered ${ms(t.postAnsweredMs)}` +
      `${r.patroni?.status ? ` (${r.patroni.status})` : ''}`,
  ];
  const o = r.verify.oldLeader;
  if (o)
    lines.push(
      `old leader ${o.name}: ${o.state}${'lagBytes' in o && o.lagBytes !== null ? `, lag ${o.lagBytes} B` : ''}`,
    );
  for (const h of r.verify.haproxy)
    lines.push(
      h.down
        ? `haproxy ${h.node}: DOWN (CT stopped): not routed; started again, it routes by its own checks`
        : `haproxy ${h.node}: writes land on ${h.writeLandedOn}`,
    );
  return lines.join('\n');
}

async function finish(
  client: Parameters<Parameters<typeof withClient>[0]>[0],
  handle: Awaited<ReturnType<typeof startRunbook>>,
) {
  await watchRun(client, handle); // prints the report (describeReport) when it completes
}

export function register(program: Command): void {
  program
    .command('switchover')
    .description(
      'planned switchover: check the cluster, hand the leader to a replica through Patroni, route HAProxy at once, verify',
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option('--to <member>', 'the replica to promote (default: the fit replica with the least lag)')
    .option(
      '--at <time>',
      'switch over at this time (ISO 8601, e.g. 2026-11-26T23:00:00Z); checked again then',
    )
    .option('--approve', 'stop at gate `switchover` until `pgha approve <id> --gate switchover --by NAME`')
    .option('--approval-timeout <duration>', 'how long the gate waits for a decision', '1h')
    .option('--dry-run', 'run the pre-checks and print the ordered plan per node; touch nothing')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action(
      async (o: {
        cluster: string;
        to?: string;
        at?: string;
        approve?: boolean;
        approvalTimeout: string;
        dryRun?: boolean;
        wait: boolean;
      }) => {
        if (o.at !== undefined && Number.isNaN(Date.parse(o.at))) {
          console.error(
            `--at ${JSON.stringify(o.at)} is not a time: use ISO 8601, e.g. 2026-11-26T23:00:00Z`,
          );
          process.exitCode = 2;
          return;
        }
        // Refused here, before anything starts (the workflow checks it again against its own clock).
        const problem =
          o.at === undefined ? undefined : scheduleProblem('--at', Date.parse(o.at), Date.now());
        if (problem) {
          console.error(problem);
          process.exitCode = 2;
          return;
        }
        await withClient(async (client) => {
          const { input, inventory } = await inventoryInput(o.cluster);
          const handle = await startRunbook<typeof switchover>(client, {
            workflow: 'switchover',
            args: [
              {
                inventory: input,
                candidate: o.to,
                scheduledAt: o.at === undefined ? undefined : new Date(o.at).toISOString(),
                approvalTimeout: o.approve ? (o.approvalTimeout as Duration) : undefined,
                dryRun: o.dryRun,
              },
            ],
            cluster: inventory.cluster,
            operation: 'switchover',
          });
          console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
          if (o.wait) await finish(client, handle);
        });
      },
    );

  program
    .command('failover')
    .description(
      'failover to a named replica when the leader is gone (refused while a healthy leader exists)',
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .requiredOption('--to <member>', 'the replica to promote')
    .option('--force', 'fail over even though a healthy leader exists')
    .option('--dry-run', 'run the pre-checks and print the ordered plan; touch nothing')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action(async (o: { cluster: string; to: string; force?: boolean; dryRun?: boolean; wait: boolean }) => {
      await withClient(async (client) => {
        const { input, inventory } = await inventoryInput(o.cluster);
        const handle = await startRunbook<typeof failover>(client, {
          workflow: 'failover',
          args: [{ inventory: input, candidate: o.to, force: o.force, dryRun: o.dryRun }],
          cluster: inventory.cluster,
          operation: 'failover',
        });
        console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
        if (o.wait) await finish(client, handle);
      });
    });
}
