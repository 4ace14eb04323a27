/**
 * The cluster lock: one running workflow per cluster, id `pgha-lock-<cluster>`, started by a runbook
 * as its child (see steps.ts). The server refuses to start a second workflow with the id of a running
 * one, so at most one runbook holds a cluster at a time, whatever the clients did. The lock ends when
 * its holder signals `release`, when it is cancelled by hand, or — parent close policy TERMINATE —
 * when the holder is terminated, so it cannot outlive its runbook.
 */
import { condition, isCancellation, setHandler } from '@temporalio/workflow';
import { lockHolder, release } from './messages';
import type { ClusterLockInput } from './messages';

export async function clusterLock(input: ClusterLockInput): Promise<ClusterLockInput> {
  let released = false;
  setHandler(release, () => {
    released = true;
  });
  setHandler(lockHolder, () => input);
  try {
    await condition(() => released);
  } catch (err) {
    if (!isCancellation(err)) throw err;
  }
  return input;
}
