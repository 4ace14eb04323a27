/**
 * A deliberately non-deterministic change to the released smoke runbook (verify moved before write,
 * as a careless edit might do), for the replay test to prove it catches such a change.
 */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { SmokeInput, SmokeResult } from '../../workflows/smoke';
import { runbook } from '../../workflows/steps';

export { clusterLock } from '../../workflows/lock';

const acts = proxyActivities<Activities>({ startToCloseTimeout: '30s' });

export async function smoke(input: SmokeInput): Promise<SmokeResult> {
  const { cluster, note, secretRef } = input;
  const runId = workflowInfo().runId;
  return runbook({ cluster, operation: 'smoke' }, async (rb) => {
    const worker = await rb.step('preflight', () => acts.smokePreflight({ cluster }));
    await rb.step('verify', () => acts.smokeVerifyMarker({ cluster, runId, note, secretRef }));
    const marker = await rb.step('write', () => acts.smokeWriteMarker({ cluster, runId, note, secretRef }));
    return { worker: worker.worker, marker: marker.path, signed: marker.signed };
  });
}
