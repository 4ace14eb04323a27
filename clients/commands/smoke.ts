/**
 * `pgha smoke`: the smoke runbook (worker, codec, secret reference, progress, approval) — touches no
 * cluster. `--dry-run`: the preflight only, then the plan printed; no marker written, no gate.
 */
import type { Duration } from '@temporalio/common';
import type { Command } from 'commander';
import { describeDryRun, isDryRun } from '../../workflows/dry-run';
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
    .option('--dry-run', 'run the preflight (a worker answers) and print the ordered plan; write nothing')
    .option('--no-wait', 'start it and return')
    .action(
      (o: {
        cluster: string;
        note?: string;
        secretRef?: string;
        approvalTimeout?: string;
        dryRun?: boolean;
        wait: boolean;
      }) =>
        withClient(async (client) => {
          const handle = await startRunbook<typeof smoke>(client, {
            workflow: 'smoke',
            args: [
              {
                cluster: o.cluster,
                note: o.note,
                secretRef: o.secretRef,
                approvalTimeout: o.approvalTimeout as Duration | undefined,
                ...(o.dryRun ? { dryRun: true } : {}),
              },
            ],
            cluster: o.cluster,
            operation: 'smoke',
          });
          console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
          if (!o.wait) return;
          const run = await watchRun(client, handle);
          if (run.status !== 'COMPLETED') return;
          const r = await handle.result();
          if (isDryRun(r)) console.log(describeDryRun(r));
        }),
    );
}
