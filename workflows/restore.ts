/**
 * restore — a physical backup back into a cluster: in place (the seed's last resort, "clean
 * Patroni's data in etcd", made a runbook with a rollback path) or into a new cluster (another
 * inventory's CTs), to the end of the archive or to a point in time.
 *
 *   plan: the backup, the recoverable window (a target outside it is refused, the window in the
 *   message), a backup of another cluster refused, what will be lost → approval (in place always;
 *   a new cluster whose CTs hold data, or --approve) → stop Patroni on every member → remove this
 *   cluster's keys in etcd (only these) → rename the old data directories aside (the rollback path)
 *   → stage the base backup and its WAL on one member → Patroni's custom bootstrap there: recovery
 *   to the target, promoted → the usual patroni.yml back → the others clone from it → verify
 *   directly: a new timeline, where recovery stopped, the backup's marker row, replicas streaming, a
 *   write through each HAProxy → remove the old directories (or keep them with --keep-old) → Barman's
 *   WAL streaming onto the new timeline and its first backup.
 *
 * A failure after the old directories were moved aside puts them back (every member stopped, the
 * restored data removed, the old directory renamed back, the keys cleaned again, the old leader
 * first, then the others) and the cluster runs as before; the run fails with RestoreFailed saying
 * so. A worker killed at any step resumes: each step looks before it acts, so nothing is restored
 * twice and the kept-aside data is never removed before the verification passed.
 */
import type { Duration } from '@temporalio/common';
import {
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  defineQuery,
  patched,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RestorePlan, RestoreVerified } from '../activities/restore';
import { Failures } from '../runbooks/failures';
import { parseRestoreTarget, type RestoreTarget, type RestoreTargetFlags } from '../runbooks/restore-target';
import { parseBackupRef } from '../runbooks/retention';
import type { Inventory, InventoryInput } from '../runbooks/schema';
import { at, summarized } from './activity-options';
import { inventoryOf, invalidInput } from './inventory';
import { drillScratchId } from './restore-drill';
import { Patches } from './patches';
import { errorMessage, runbook } from './steps';

export interface RestoreInput extends RestoreTargetFlags {
  /** The cluster whose backup is restored (its backup CT holds it). */
  inventory: InventoryInput;
  /** latest (the default: the newest backup before the target), a Barman backup id or a pgha backup name. */
  backup?: string;
  mode: 'new-cluster' | 'in-place';
  /** new-cluster: the inventory of the CTs restored into. */
  into?: InventoryInput;
  /** Wait for `pgha approve` also where it is not mandatory (a new cluster's empty CTs). */
  approve?: boolean;
  /** Keep the old data directories (`<data>.pgha-old-<tag>`) after the restore was verified. */
  keepOld?: boolean;
  /** The plan only: nothing is stopped or changed. */
  dryRun?: boolean;
  /** How long the approval gate waits (default 1h). */
  approvalTimeout?: Duration;
  /** Tests only: fail right after this step, to prove the rollback path. */
  failAfter?: 'move aside' | 'bootstrap';
}

export interface RestoreResult {
  outcome: 'restored' | 'dry-run';
  plan: RestorePlan;
  approvedBy?: string;
  leader?: string;
  verified?: RestoreVerified;
  staged?: { walFiles: number; bytes: number; seconds: number };
  oldDirectories: 'removed' | 'kept' | 'none';
  /** The first backup of the new timeline: its Barman id, or why there is none. */
  firstBackup?: string;
}

/** The plan once it is made (what will be lost, the window, the backup): the CLI prints it before the gate. */
export const restorePlanQuery = defineQuery<RestorePlan | undefined>('restorePlan');

const act = summarized<Activities>('restore');
const node = summarized<Activities>('nodeStep');
const gate = summarized<Activities>('gate');
const etcd = summarized<Activities>({
  startToCloseTimeout: '3m',
  heartbeatTimeout: '1m',
  retry: { initialInterval: '2s', maximumAttempts: 3, nonRetryableErrorTypes: [Failures.EtcdRefused] },
});

/** The clean refuses while a member's state cannot be told (a `pct status` that failed once): asked again. */
const cleanAgain = { attempts: 3, retryDelay: '5s' } as const;

const postgres = (inv: Inventory) => inv.nodes.postgres.map((n) => n.hostname);

/** Like Promise.all, but a failure is thrown only once every step has ended (none still runs into the rollback). */
async function settled<T extends readonly unknown[]>(work: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(work);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

export async function restore(input: RestoreInput): Promise<RestoreResult> {
  const source = inventoryOf(input);
  const inv = input.into ? inventoryOf({ inventory: input.into }) : source;
  let backup = 'latest';
  let target: RestoreTarget = { kind: 'latest' };
  try {
    if (input.mode !== 'in-place' && input.mode !== 'new-cluster')
      throw new Error(`--mode ${JSON.stringify(input.mode)}: give new-cluster or in-place`);
    if (input.mode === 'new-cluster' && !input.into)
      throw new Error('--mode new-cluster needs --into OTHER_INVENTORY (the CTs restored into)');
    backup = parseBackupRef('--backup', input.backup ?? 'latest');
    target = parseRestoreTarget(input);
  } catch (err) {
    invalidInput((err as Error).message);
  }
  const tag = drillScratchId(`restore-${inv.cluster}`, workflowInfo().runId);
  const mustApprove = input.mode === 'in-place' || input.approve === true;
  const plan = [
    'plan',
    { gate: 'restore' },
    'stop',
    'clean dcs',
    'move aside',
    'stage',
    'bootstrap',
    'replicas',
    'verify',
    'old data',
  ];
  let made: RestorePlan | undefined;
  setHandler(restorePlanQuery, () => made);
  return runbook({ cluster: inv.cluster, operation: 'restore', plan }, async (rb) => {
    const p = await rb.step('plan', () =>
      act.restorePlan(`${source.cluster} → ${inv.cluster}`, {
        source,
        inv,
        mode: input.mode,
        backup,
        target,
        tag,
      }),
    );
    made = p;
    if (input.dryRun) return { outcome: 'dry-run', plan: p, oldDirectories: 'none' };
    let approvedBy: string | undefined;
    if (mustApprove || p.members.some((m) => m.hasData))
      approvedBy = (await rb.approval('restore', { timeout: input.approvalTimeout ?? '1h' })).approver;

    // The replicas stop first, the member that restores (in place: the leader) last: a leader
    // stopped while a replica still ran let that replica promote itself onto a timeline of its
    // own, which the rollback's leader (the old one) does not have — it never streamed again.
    const leaderLast = patched(Patches.restoreLeaderStopsLast);
    const stopOrder = leaderLast
      ? [...postgres(inv).filter((h) => h !== p.restoreOn), p.restoreOn]
      : postgres(inv);
    const on = p.restoreOn;
    const stop = (h: string) =>
      rb.step(`stop ${h}`, () => act.restoreStopMember(at(inv, h), { inv, hostname: h }), { node: h });
    const moveAside = (h: string) =>
      rb.step(`move aside ${h}`, () => act.restoreMoveAside(at(inv, h), { inv, hostname: h, tag }), {
        node: h,
      });
    const stage = () =>
      rb.step(
        'stage',
        () => act.restoreStage(at(inv, on), { source, inv, hostname: on, backup: p.backup, tag }),
        { node: on },
      );
    const together = leaderLast && patched(Patches.restoreStageBesideStops);
    // from the first stop on, a failure puts the old data back and starts the cluster again
    try {
      let staged: Awaited<ReturnType<typeof stage>>;
      if (together) {
        // The stage reads only Barman's storage and writes only its own directory beside the data
        // directory: it runs while 1. the replicas stop together, then the leader (last), this
        // cluster's keys are cleaned, and 2. every data directory is renamed aside (the rollback
        // path). Both paths end before the next step, or before the rollback when one fails; a
        // stage that failed stops the other path at its next step (no member stopped for nothing).
        let stageFailed = false;
        const staging = stage().catch((e: unknown) => {
          stageFailed = true;
          throw e;
        });
        const stopped = async () => {
          await settled(stopOrder.filter((h) => h !== on).map(stop));
          if (stageFailed) return;
          await stop(on);
          if (stageFailed) return;
          await rb.step(
            'clean dcs',
            () => etcd.dcsCleanDelete(`cluster ${inv.cluster}`, { inv }),
            cleanAgain,
          );
          if (stageFailed) return;
          await settled(postgres(inv).map(moveAside));
        };
        [staged] = await settled([staging, stopped()]);
        if (input.failAfter === 'move aside')
          throw new Error('injected failure after the move-aside (failAfter)');
      } else {
        // 1. every member stopped, then this cluster's keys (and only these) removed from etcd
        for (const h of stopOrder) await stop(h);
        await rb.step('clean dcs', () => etcd.dcsCleanDelete(`cluster ${inv.cluster}`, { inv }), cleanAgain);
        // 2. the old data directories renamed aside: the rollback path
        for (const h of postgres(inv)) await moveAside(h);
        if (input.failAfter === 'move aside')
          throw new Error('injected failure after the move-aside (failAfter)');
        staged = await stage();
      }
      await rb.step(
        'bootstrap',
        () => act.restoreBootstrap(at(inv, on), { inv, hostname: on, tag, target: p.target }),
        { node: on },
      );
      await rb.step(
        'restored leader',
        () => act.waitPrimary(at(inv, on), { inv, hostname: on, timeoutMs: 7_200_000 }),
        { node: on },
      );
      if (input.failAfter === 'bootstrap')
        throw new Error('injected failure after the bootstrap (failAfter)');
      await rb.step(
        'usual config',
        () => act.restoreFinishBootstrap(at(inv, on), { inv, hostname: on, tag }),
        { node: on },
      );

      // 3. the others clone from the restored leader
      for (const h of postgres(inv).filter((x) => x !== on))
        await rb.step(`replica ${h}`, () => node.startPatroni(at(inv, h), { inv, hostname: h }), { node: h });
      await rb.step('replicas', () =>
        act.waitReplication(`cluster ${inv.cluster}`, {
          inv,
          leader: on,
          maxLagBytes: inv.patroni.maximumLagOnFailover,
          timeoutMs: 1_800_000,
        }),
      );

      // 4. verified directly
      const verified = await rb.step('verify', () =>
        act.restoreVerify(at(inv, on), { inv, leader: on, backup: p.backup, target: p.target }),
      );
      if (verified.problems.length) throw new Error(`verification failed: ${verified.problems.join('; ')}`);
      await rb.step('writes through haproxy', () =>
        gate.checkThroughHaproxy(`cluster ${inv.cluster}`, { inv, leader: on, timeoutMs: 60_000 }),
      );

      // 5. the old data: removed (or kept)
      for (const h of postgres(inv))
        if (!input.keepOld)
          await rb.step(
            `remove old ${h}`,
            () => act.restoreRemoveOld(at(inv, h), { inv, hostname: h, tag }),
            { node: h },
          );
      const result: RestoreResult = {
        outcome: 'restored',
        plan: p,
        leader: on,
        verified,
        staged,
        oldDirectories: input.keepOld ? 'kept' : 'removed',
        ...(approvedBy ? { approvedBy } : {}),
      };
      // 6. Barman onto the new timeline, and its first backup
      if (inv.nodes.backup.length && input.mode === 'in-place') {
        try {
          await rb.step('wal streaming', () =>
            act.restoreResetWalStreaming(`cluster ${inv.cluster}`, { inv }),
          );
          await rb.step('barman ready', () => act.waitBarmanReady(`cluster ${inv.cluster}`, { inv }));
          const name = `pgha-${tag}`;
          const b = await rb.step('first backup', () =>
            act.physicalBackup(`cluster ${inv.cluster}`, { inv, name }),
          );
          result.firstBackup = b.backupId;
        } catch (err) {
          result.firstBackup = `not taken: ${errorMessage(err)}`;
        }
      } else
        result.firstBackup = `none: ${inv.cluster} ${inv.nodes.backup.length ? 'is a new cluster (its backup CT is set up by pgha deploy)' : 'has no backup CT'}`;
      return result;
    } catch (err) {
      const why = isCancellation(err) ? 'cancelled' : errorMessage(err);
      let streaming = '';
      await CancellationScope.nonCancellable(async () => {
        for (const h of postgres(inv))
          await rb.step(
            `put back ${h}`,
            () => act.restoreRollbackMember(at(inv, h), { inv, hostname: h, tag }),
            { node: h },
          );
        await rb.step(
          'clean dcs again',
          () => etcd.dcsCleanDelete(`cluster ${inv.cluster}`, { inv }),
          cleanAgain,
        );
        const first = p.restoreOn;
        const had = p.members.filter((m) => m.hasData).map((m) => m.hostname);
        if (had.includes(first)) {
          await rb.step(`start ${first}`, () => node.startPatroni(at(inv, first), { inv, hostname: first }), {
            node: first,
          });
          await rb.step('old leader', () =>
            gate.waitPrimary(at(inv, first), { inv, hostname: first, timeoutMs: 600_000 }),
          );
        }
        for (const h of had.filter((x) => x !== first))
          await rb.step(`start ${h}`, () => node.startPatroni(at(inv, h), { inv, hostname: h }), { node: h });
        // the rollback's post-check: the cluster runs as before only once every replica streams
        if (leaderLast && had.includes(first) && had.length === postgres(inv).length && had.length > 1)
          try {
            await rb.step('replicas streaming', () =>
              gate.waitReplication(`cluster ${inv.cluster}`, {
                inv,
                leader: first,
                maxLagBytes: inv.patroni.maximumLagOnFailover,
                timeoutMs: 300_000,
              }),
            );
            streaming = `; every replica streams from ${first}`;
          } catch (e) {
            streaming = `; but the replicas do NOT stream from ${first} (${errorMessage(e)}): see pgha status and the replicas' logs`;
          }
      });
      throw ApplicationFailure.create({
        type: Failures.RestoreFailed,
        nonRetryable: true,
        message: `restore of backup ${p.backup.backupId} into ${inv.cluster} FAILED: ${why}; the old data directories were put back and the cluster was started again from them (${p.restoreOn} first)${streaming}`,
      });
    }
  });
}
