/** `pgha smoke`: the smoke runbook (worker, codec, secret reference, progress, approval) — touches no cluster. */
import type { Duration } from '@temporalio/common';
import type { Command } from 'commander';
import type { smoke } from '../../workflows/smoke';
import { withClient } from '../connection';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';

export function register(program: Command): void {
  program
    .command('smoke')
    .description('run the smoke runbook end to end through the server and a worker (touches no cluster)')
    .option('--cluster <name>', 'the name it locks and tags (PgCluster)', 'smoke')
    .option('--note <text>', 'text carried through the run (encrypted in history)')
    .option(
      '--secret-ref <ref>',
      'a secret the worker resolves and signs the marker with (env:NAME or file:PATH)',
    )
    .option(
      '--approval-timeout <duration>',
      'stop at gate before-verify for this long (e.g. 10m) for pgha approve',
    )
    .option('--no-wait', 'start it and return')
    .action(
      (o: { cluster: string; note?: string; secretRef?: string; approvalTimeout?: string; wait: boolean }) =>
        withClient(async (client) => {
          const handle = await startRunbook<typeof smoke>(client, {
            workflow: 'smoke',
            args: [
              {
                cluster: o.cluster,
                note: o.note,
                secretRef: o.secretRef,
                approvalTimeout: o.approvalTimeout as Duration | undefined,
              },
            ],
            cluster: o.cluster,
            operation: 'smoke',
          });
          console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
          if (o.wait) await watchRun(client, handle);
        }),
    );
}
