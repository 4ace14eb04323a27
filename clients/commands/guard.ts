/**
 * `pgha guard start|stop|status --cluster FILE`: the cluster's guardian (workflows/guardian.ts),
 * one long-running workflow per cluster (id guardian-<cluster>) that watches the leader key and
 * routes HAProxy when Patroni fails over by itself. `status` also lists its failover-observed records.
 * `start --dry-run`: a short run under an id of its own (guardian-<cluster>-dry-run-<time>) that
 * reads the leader key and prints the guardian's plan; it starts no guardian.
 */
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import type { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { taskQueue } from '../../temporal.config';
import { orPlan } from '../../workflows/dry-run';
import {
  FAILOVER_OBSERVED_OPERATION,
  GUARDIAN_OPERATION,
  guardianDryRunSuffix,
  guardianState,
  guardianWorkflowId,
} from '../../workflows/guardian';
import type { FailoverFacts, GuardianState, clusterGuardian } from '../../workflows/guardian';
import { PgCluster, PgOperation } from '../../workflows/messages';
import { withClient } from '../connection';
import { inventoryInput } from '../inventory-input';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';

/** Starts the cluster's guardian; one already running is reported, not doubled. */
export async function startGuardian(
  client: Client,
  cluster: string,
  input: Parameters<typeof clusterGuardian>[0],
  opts: { taskQueue?: string } = {},
): Promise<{ workflowId: string; runId?: string; already: boolean }> {
  const workflowId = guardianWorkflowId(cluster);
  try {
    const h = await client.workflow.start<typeof clusterGuardian>('clusterGuardian', {
      workflowId,
      taskQueue: opts.taskQueue ?? taskQueue,
      args: [input],
      typedSearchAttributes: [
        { key: PgCluster, value: cluster },
        { key: PgOperation, value: GUARDIAN_OPERATION },
      ],
    });
    return { workflowId, runId: h.firstExecutionRunId, already: false };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { workflowId, already: true };
    throw err;
  }
}

/**
 * A dry run of the cluster's guardian: under guardian-<cluster>-dry-run-<time> (never the guardian's
 * own id), beside any runbook (it takes no lock); its result is the plan.
 */
export async function startGuardianDryRun(
  client: Client,
  cluster: string,
  inventory: Parameters<typeof clusterGuardian>[0]['inventory'],
  opts: { taskQueue?: string; at?: Date } = {},
) {
  return startRunbook<typeof clusterGuardian>(client, {
    workflow: 'clusterGuardian',
    args: [{ inventory, dryRun: true }],
    cluster,
    operation: GUARDIAN_OPERATION,
    suffix: guardianDryRunSuffix(opts.at ?? new Date()),
    exclusive: false,
    taskQueue: opts.taskQueue,
  });
}

/** The failover-observed records of a cluster, newest first. */
export async function failoverRecords(client: Client, cluster: string, limit = 10): Promise<FailoverFacts[]> {
  const out: FailoverFacts[] = [];
  const query = `PgCluster = '${cluster}' AND PgOperation = '${FAILOVER_OBSERVED_OPERATION}'`;
  for await (const wf of client.workflow.list({ query, pageSize: limit })) {
    if (out.length >= limit) break;
    out.push(await client.workflow.getHandle(wf.workflowId, wf.runId).result());
  }
  return out;
}

export function describeGuardianState(state: GuardianState): string {
  return (
    `guardian of ${state.cluster}: running since ${state.since}; leader ${state.leader ?? 'unknown'}; ${state.phase}; ` +
    `${state.observed} failover(s) recorded, ${state.yielded} runbook change(s) left alone`
  );
}

export function formatFacts(f: FailoverFacts): string {
  const parts = [
    `${f.newHolderAt}  ${f.oldLeader ?? '(none)'} → ${f.newLeader}`,
    f.timeline !== undefined ? `timeline ${f.timeline}` : 'timeline unknown',
    f.writesRefusedMs !== undefined ? `writes refused ${(f.writesRefusedMs / 1000).toFixed(1)} s` : undefined,
    f.lostBytes !== undefined ? `lost ${f.lostBytes} B` : undefined,
    f.routeError ? `NOT ROUTED: ${f.routeError}` : `routed on ${(f.routedOn ?? []).join(', ')}`,
  ];
  return parts.filter(Boolean).join('; ');
}

export function register(program: Command): void {
  const guard = program
    .command('guard')
    .description(
      "the cluster's guardian: watches the leader key, routes HAProxy when Patroni fails over by itself",
    );
  guard
    .command('start')
    .description('start the guardian of a cluster (one per cluster; a running one is left as it is)')
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option(
      '--dry-run',
      'read the leader key and print what the guardian would watch, yield to, route and record; start no guardian',
    )
    .action(async (o: { cluster: string; dryRun?: boolean }) => {
      await withClient(async (client) => {
        const { input, inventory } = await inventoryInput(o.cluster);
        if (o.dryRun) {
          const handle = await startGuardianDryRun(client, inventory.cluster, input);
          console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
          const run = await watchRun(client, handle);
          if (run.status !== 'COMPLETED') return;
          console.log(orPlan(describeGuardianState)(await handle.result()));
          const running = await client.workflow
            .getHandle(guardianWorkflowId(inventory.cluster))
            .describe()
            .then((d) => d.status.name === 'RUNNING')
            .catch((err: unknown) => {
              if (err instanceof WorkflowNotFoundError) return false;
              throw err;
            });
          console.log(
            running
              ? `the guardian ${guardianWorkflowId(inventory.cluster)} is already running: pgha guard start would leave it as it is`
              : `no guardian of ${inventory.cluster} is running: pgha guard start --cluster ${o.cluster} starts ${guardianWorkflowId(inventory.cluster)}`,
          );
          return;
        }
        const r = await startGuardian(client, inventory.cluster, { inventory: input });
        process.stdout.write(
          r.already
            ? `the guardian of ${inventory.cluster} is already running (${r.workflowId})\n`
            : `started ${r.workflowId} (run ${r.runId})\n`,
        );
      });
    });
  guard
    .command('stop')
    .description('stop the guardian of a cluster (a routing in flight finishes first)')
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .action(async (o: { cluster: string }) => {
      await withClient(async (client) => {
        const { inventory } = await inventoryInput(o.cluster);
        const h = client.workflow.getHandle(guardianWorkflowId(inventory.cluster));
        try {
          await h.cancel();
          await h.result().catch(() => undefined);
          process.stdout.write(`stopped ${h.workflowId}\n`);
        } catch (err) {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
          process.stdout.write(`no guardian of ${inventory.cluster} is running\n`);
        }
      });
    });
  guard
    .command('status')
    .description("the guardian's state and the cluster's failover-observed records")
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option('--json', 'print as JSON')
    .action(async (o: { cluster: string; json?: boolean }) => {
      await withClient(async (client) => {
        const { inventory } = await inventoryInput(o.cluster);
        const h = client.workflow.getHandle(guardianWorkflowId(inventory.cluster));
        let state: GuardianState | undefined;
        try {
          const d = await h.describe();
          if (d.status.name === 'RUNNING') state = await h.query(guardianState);
        } catch (err) {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
        }
        const records = await failoverRecords(client, inventory.cluster);
        if (o.json) {
          process.stdout.write(
            `${JSON.stringify({ running: state !== undefined, state, records }, null, 2)}\n`,
          );
          return;
        }
        process.stdout.write(
          state
            ? `${describeGuardianState(state)}\n`
            : `guardian of ${inventory.cluster}: not running (pgha guard start --cluster ${o.cluster})\n`,
        );
        for (const r of records) process.stdout.write(`  ${formatFacts(r)}\n`);
        if (!state) process.exitCode = 1;
      });
    });
}
