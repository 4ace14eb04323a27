/** `pgha deploy --cluster FILE`: the deployCluster runbook, with live step progress. */
import type { Duration } from '@temporalio/common';
import type { Command } from 'commander';
import type { deployCluster } from '../../workflows/deploy-cluster';
import { describeDryRun, isDryRun } from '../../workflows/dry-run';
import { withClient } from '../connection';
import { inventoryInput } from '../inventory-input';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';

export function register(program: Command): void {
  program
    .command('deploy')
    .description('install the whole cluster: etcd, then PostgreSQL + Patroni, then HAProxy, checking each')
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option(
      '--approval-timeout <duration>',
      'stop before bootstrapping PostgreSQL until `pgha approve` (e.g. 1h)',
    )
    .option(
      '--guard',
      "then start the cluster's guardian (as `pgha guard start`; a running one is kept); default: the inventory's `guardian`",
    )
    .option(
      '--synchronous',
      "with a backup CT: Barman's WAL receiver becomes the synchronous standby (zero RPO; every commit waits for it); default: the inventory's backup.synchronous",
    )
    .option('--no-synchronous', "with a backup CT: Barman's WAL receiver asynchronous again")
    .option(
      '--dry-run',
      'run the pre-flight on every node and print the ordered plan per node; install nothing',
    )
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .option(
      '--print-input',
      'print the workflow input as JSON and start nothing (for `temporal workflow start --input-file`)',
    )
    .action(
      async (o: {
        cluster: string;
        approvalTimeout?: string;
        guard?: boolean;
        synchronous?: boolean;
        dryRun?: boolean;
        wait: boolean;
        printInput?: boolean;
      }) => {
        if (o.printInput) {
          const { input } = await inventoryInput(o.cluster);
          console.log(
            JSON.stringify(
              {
                inventory: input,
                approvalTimeout: o.approvalTimeout,
                guard: o.guard,
                synchronousBackup: o.synchronous,
                dryRun: o.dryRun,
              },
              null,
              2,
            ),
          );
          return;
        }
        await withClient(async (client) => {
          const { input, inventory } = await inventoryInput(o.cluster);
          const handle = await startRunbook<typeof deployCluster>(client, {
            workflow: 'deployCluster',
            args: [
              {
                inventory: input,
                approvalTimeout: o.approvalTimeout as Duration | undefined,
                ...(o.guard ? { guard: true } : {}),
                ...(o.synchronous !== undefined ? { synchronousBackup: o.synchronous } : {}),
                ...(o.dryRun ? { dryRun: true } : {}),
              },
            ],
            cluster: inventory.cluster,
            operation: 'deploy',
          });
          console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
          if (!o.wait) return;
          const ended = await watchRun(client, handle);
          if (ended.status !== 'COMPLETED') return;
          const r = await handle.result();
          if (isDryRun(r)) console.log(describeDryRun(r));
        });
      },
    );
}
