/**
 * smoke: a four-step runbook that exercises the whole machine — server, worker, codec, secrets,
 * progress, approval, compensation — without touching any cluster. `pgha smoke` runs it.
 *
 *   1. preflight   a worker answers
 *   2. write       it writes this run's marker in its state dir, signed with the secret (if a ref is given)
 *   (gate before-verify, when asked for: the run waits for `pgha approve`)
 *   3. verify      it reads the marker back and checks the signature with the secret resolved again
 *   4. cleanup     it removes the marker (also the write step's compensation when the run is cancelled)
 *
 * A dry run (`pgha smoke --dry-run`, input `dryRun: true`) runs the preflight only and returns the
 * plan: no marker is written, no gate waits.
 */
import { workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { summarized } from './activity-options';
import { dryRunReport, dryRunning, type DryRunReport } from './dry-run';
import { runbook } from './steps';
import type { PlanEntry } from './steps';
import type { Duration } from '@temporalio/common';

const acts = summarized<Activities>('quick');

export interface SmokeInput {
  cluster: string;
  /** Free text carried into the marker (encrypted in history like all inputs). */
  note?: string;
  /** `env:NAME` or `file:PATH`: a secret the write and verify steps resolve and use. */
  secretRef?: string;
  /** Stop at the approval gate `before-verify`, waiting this long (e.g. '1h'); no gate when absent. */
  approvalTimeout?: Duration;
  /** Run the preflight (a worker answers), return the ordered plan; write, wait at no gate, remove nothing. */
  dryRun?: boolean;
}

export interface SmokeResult {
  worker: string;
  marker: string;
  signed: boolean;
  approvedBy?: string;
}

export async function smoke(input: SmokeInput): Promise<SmokeResult | DryRunReport> {
  const { cluster, note, secretRef } = input;
  const runId = workflowInfo().runId;
  // Only a run asked for a dry run evaluates the patch: the saved smoke histories replay unchanged.
  if (dryRunning(input)) {
    return runbook({ cluster, operation: 'smoke', plan: ['preflight'] }, async (rb) => {
      const w = await rb.step('preflight', () =>
        acts.smokePreflight(`cluster ${cluster} (dry run)`, { cluster }),
      );
      const signed = secretRef
        ? `signed (HMAC-SHA256) with the secret ${secretRef} resolved on the worker`
        : 'unsigned (no secret reference)';
      return dryRunReport(cluster, 'smoke', [
        `preflight: worker ${w.worker} (pid ${w.pid}, node ${w.node}) answers`,
        `write on worker ${w.worker}: this run's marker in its state directory (smoke/), ${signed}${note !== undefined ? ', carrying the note' : ''}; removed again if the run is cancelled`,
        input.approvalTimeout !== undefined &&
          `gate before-verify: wait up to ${String(input.approvalTimeout)} for pgha approve`,
        `verify on worker ${w.worker}: the marker read back${secretRef ? ', its signature checked with the secret resolved again' : ''}`,
        `cleanup on worker ${w.worker}: the marker removed`,
      ]);
    });
  }
  const plan: PlanEntry[] = ['preflight', 'write', 'verify', 'cleanup'];
  if (input.approvalTimeout) plan.splice(2, 0, { gate: 'before-verify' });

  return runbook({ cluster, operation: 'smoke', plan }, async (rb) => {
    const worker = await rb.step('preflight', () => acts.smokePreflight(`cluster ${cluster}`, { cluster }));

    const marker = await rb.step(
      'write',
      () => acts.smokeWriteMarker(`marker of run ${runId}`, { cluster, runId, note, secretRef }),
      {
        compensate: () => acts.smokeRemoveMarker(`undo: marker of run ${runId}`, { cluster, runId }),
      },
    );

    const approval = input.approvalTimeout
      ? await rb.approval('before-verify', { timeout: input.approvalTimeout })
      : undefined;

    await rb.step('verify', () =>
      acts.smokeVerifyMarker(`marker of run ${runId}`, { cluster, runId, note, secretRef }),
    );

    await rb.step('cleanup', () => acts.smokeRemoveMarker(`marker of run ${runId}`, { cluster, runId }));

    return {
      worker: worker.worker,
      marker: marker.path,
      signed: marker.signed,
      approvedBy: approval?.approver,
    };
  });
}
