/**
 * upgradeMajor — PostgreSQL to the next major with pg_upgrade, under Patroni, as Patroni's
 * docs/existing_data.rst lays it out ("Major upgrade of PostgreSQL Version"):
 *
 *   pre-check (etcd quorum, one leader, replicas caught up, every member on the inventory's major,
 *   the target build in the install source) → the new binaries beside the old on every member →
 *   on the leader: initdb of the new data directory with the old one's checksum setting and
 *   locale, every extension available, `pg_upgrade --check` → pause Patroni → stop the leader,
 *   then the replicas; every member stopped at the same checkpoint → [approval gate `pg_upgrade`]
 *   → `pg_upgrade --link` on the leader (once) → patroni.yml for the new bin and data directories
 *   on every member → this cluster's keys removed from etcd → ── the point of no return ── → the
 *   leader started on the new major (Patroni takes the upgraded directory as an existing cluster)
 *   → each replica re-cloned from it → resume → ANALYZE what pg_upgrade did not carry → verify.
 *
 * Since the `major-fast-cutover` patch the write outage is only what must happen while the
 * cluster is stopped: the stop keeps the leader writable to the last moment (majorStop);
 * pg_upgrade, the new patroni.yml on every member and (with a backup CT) the old major's Barman
 * server retired run at once; the new leader is routed by every HAProxy's runtime API the instant
 * it takes writes (guardianRoute, as the switchover's hand-off). After writes are back: the
 * replicas re-cloned, ANALYZE, `ALTER EXTENSION … UPDATE` where the new build has a newer
 * version, verify, and with a backup CT a fresh backup under the new major's Barman server.
 *
 * Any failure (or a rejected gate, or a cancel) before the point brings the old major back by
 * itself: pg_control.old renamed back, the new directory removed, the old patroni.yml, PostgreSQL
 * and Patroni started, resumed, healthy — and the run fails as MajorUpgradeRolledBack. After the
 * point there is no way back (the new cluster wrote into the linked files): the run fails as
 * MajorUpgradePastPoint saying where it stands. Every step converges on what it finds, so a
 * resumed run never repeats pg_upgrade.
 */
import {
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  patched,
  workflowInfo,
} from '@temporalio/workflow';
import type { ActivityOptions } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { Activities } from '../activities';
import type {
  ExtensionUpdate,
  MajorCheckResult,
  MajorPgUpgradeResult,
  MajorPlan,
  MajorStopResult,
} from '../activities/upgrade-major';
import { Failures } from '../runbooks/failures';
import { DEFAULT_MAX_LAG_BYTES, majorTargetInput, pgVersionText } from '../runbooks/pg-version';
import { parseInventory } from '../runbooks/schema';
import type { Inventory, InventoryInput } from '../runbooks/schema';
import { activityOptions, at, summarized } from './activity-options';
import { backupName } from './backup';
import { invalidInput, inventoryOf } from './inventory';
import { Patches } from './patches';
import { errorMessage, runbook } from './steps';
import type { PlanEntry, Runbook } from './steps';

export interface UpgradeMajorInput {
  inventory: InventoryInput;
  /** The major to go to (18: the install source's newest 18.x), or a build (18.6). */
  to: string;
  /** Only the pre-check and the plan: nothing is touched. */
  dryRun?: boolean;
  /** Stop at the gate `pg_upgrade` (the cluster stopped, nothing upgraded yet) until `pgha approve`. */
  approve?: boolean;
  approvalTimeout?: Duration;
  /** Replicas must be within this many bytes of the leader (default 10 MiB). */
  maxLagBytes?: number;
}

export interface UpgradeMajorReport {
  cluster: string;
  outcome: 'upgraded' | 'already-done' | 'dry-run';
  message: string;
  /** 17.11 → 18.6 */
  from: string;
  to: string;
  leader: string;
  replicas: string[];
  plan: string[];
  check?: MajorCheckResult;
  pgUpgrade?: MajorPgUpgradeResult;
  /** From the stop of the leader to the leader up on the new major (writes refused meanwhile). */
  downMs?: number;
  /** Where each member stopped, and when (ms into the stop step). */
  stop?: MajorStopResult;
  /** Extensions updated to the new build's default version. */
  extensions?: ExtensionUpdate[];
  /** The fresh backup of the old major taken before anything stopped (a cluster with a backup CT). */
  backupBefore?: { server: string; backupId: string; name: string };
  /** The fresh backup under the new major's Barman server (a cluster with a backup CT). */
  backup?: { server: string; retired: string; backupId: string; name: string; endLsn: string };
  /** HAProxy left to its own checks: why the runtime API routing did not happen. */
  routeNote?: string;
  /** What to change in the inventory file now (versions.postgresql, and the directories). */
  inventoryChange?: string;
  startedAt: string;
  tookMs: number;
}

const final = [
  Failures.MajorUpgradeRefused,
  Failures.MajorUpgradeFailed,
  Failures.MaintenanceRefused,
  Failures.MaintenanceFailed,
  Failures.PatroniAuthRejectedError,
  Failures.EtcdRefused,
];
const profile = (base: ActivityOptions, startToCloseTimeout: Duration): ActivityOptions => ({
  ...base,
  startToCloseTimeout,
  heartbeatTimeout: '20s',
  retry: { initialInterval: '2s', maximumAttempts: 3, nonRetryableErrorTypes: final },
});
/** Pre-checks and quick reads/writes: a refusal is final. */
const check = summarized<Activities>(profile(activityOptions.maintenance, '15m'));
/** The long steps (install, pg_upgrade, a clone, ANALYZE): bounded inside, heartbeating. */
const act = summarized<Activities>(profile(activityOptions.longWait, '4h'));
/** The backup CT's steps, with deployCluster's and backup's own options. */
const node = summarized<Activities>('nodeStep');
const gate = summarized<Activities>('gate');
const long = summarized<Activities>('longWait');

/** The steps as the operator reads them (the dry run prints them). */
export function planMajor(
  p: Pick<MajorPlan, 'leader' | 'replicas' | 'build' | 'fromNum'>,
  fast?: { backup?: { from: string; to: string }; backupBefore?: boolean },
): string[] {
  const from = pgVersionText(p.fromNum);
  if (fast)
    return [
      `install PostgreSQL ${p.build} beside ${from} on every member`,
      `${p.leader}: initdb the new data directory (same checksums, encoding, locale); extensions; pg_upgrade --check`,
      ...(fast.backup && fast.backupBefore
        ? [`a fresh backup of ${from} under the Barman server ${fast.backup.from}, while the cluster serves`]
        : []),
      'pause Patroni',
      `stop ${p.replicas.join(', ')}'s Patroni; CHECKPOINT; stop ${p.leader} (leader: writes refused from here) and its Patroni`,
      `at once: ${p.leader}: pg_upgrade --link (rollback to ${from} possible until the new cluster starts); ${p.replicas.join(', ')} stopped at the leader's checkpoint (every member at the same one); patroni.yml for the new directories on every member` +
        (fast.backup ? `; Barman server ${fast.backup.from} retired` : ''),
      "remove this cluster's keys in etcd",
      `── point of no return ── start ${p.leader} on ${p.build}; every HAProxy routes writes to it the instant it takes them`,
      ...p.replicas.map((r) => `re-clone ${r} from ${p.leader}`),
      'resume Patroni; ANALYZE what pg_upgrade did not carry; ALTER EXTENSION … UPDATE where the new build is newer; verify',
      ...(fast.backup ? [`a fresh backup under the new Barman server ${fast.backup.to}`] : []),
    ];
  return [
    `install PostgreSQL ${p.build} beside ${from} on every member`,
    `${p.leader}: initdb the new data directory (same checksums, encoding, locale); extensions; pg_upgrade --check`,
    'pause Patroni',
    `stop ${p.leader} (leader), then ${p.replicas.join(', ')}; every member at the same checkpoint`,
    `${p.leader}: pg_upgrade --link (rollback to ${from} possible until the new cluster starts)`,
    'patroni.yml for the new bin and data directories on every member',
    "remove this cluster's keys in etcd",
    `── point of no return ── start ${p.leader} on ${p.build}`,
    ...p.replicas.map((r) => `re-clone ${r} from ${p.leader}`),
    'resume Patroni; ANALYZE what pg_upgrade did not carry; verify',
  ];
}

function stopped(message: string, type: string): never {
  throw ApplicationFailure.nonRetryable(message, type);
}

export async function upgradeMajor(input: UpgradeMajorInput): Promise<UpgradeMajorReport> {
  const inv = inventoryOf(input);
  if (typeof input.to !== 'string' || !/^\d{1,3}(\.\d{1,3}){0,2}$/.test(input.to))
    invalidInput(`to ${JSON.stringify(input.to)} is not a PostgreSQL version: use e.g. --to 18`);
  if (input.maxLagBytes !== undefined && !(Number.isInteger(input.maxLagBytes) && input.maxLagBytes > 0))
    invalidInput(`maxLagBytes ${JSON.stringify(input.maxLagBytes)} must be a positive whole number`);
  const fast = patched(Patches.majorFastCutover);
  const withBackup = fast && inv.nodes.backup.length > 0;
  const backupBefore = withBackup && patched(Patches.majorBackupBefore);
  const plan: PlanEntry[] = ['pre-check'];
  if (!input.dryRun) {
    plan.push('install', 'check', ...(backupBefore ? ['backup before'] : []), 'pause', 'stop');
    if (input.approve) plan.push({ gate: 'pg_upgrade' });
    if (!fast)
      plan.push('pg_upgrade', 'configure', 'remove from etcd', 'start leader', 'resume', 'analyze', 'verify');
    else {
      plan.push('pg_upgrade', 'stop replicas', 'configure', ...(withBackup ? ['backup retire'] : []));
      plan.push('remove from etcd');
      plan.push('start leader', 'resume', 'analyze', 'extensions', 'verify');
      if (withBackup)
        plan.push(
          'backup install',
          'backup roles',
          ...(inv.backup.synchronous ? ['backup synchronous'] : []),
          'backup check',
          'backup',
        );
    }
  }
  return runbook({ cluster: inv.cluster, operation: 'upgrade', plan }, async (rb) => {
    const started = Date.now();
    const pre = await rb.step('pre-check', () =>
      check.majorPrecheck(`cluster ${inv.cluster}`, {
        inv,
        to: input.to,
        maxLagBytes: input.maxLagBytes ?? DEFAULT_MAX_LAG_BYTES,
      }),
    );
    const report: UpgradeMajorReport = {
      cluster: inv.cluster,
      outcome: 'upgraded',
      message: '',
      from: pgVersionText(pre.fromNum) ?? '?',
      to: pre.build,
      leader: pre.leader,
      replicas: pre.replicas,
      plan: [],
      startedAt: new Date(started).toISOString(),
      tookMs: 0,
    };
    const finish = (outcome: UpgradeMajorReport['outcome'], message: string) => {
      report.outcome = outcome;
      report.message = message;
      report.tookMs = Date.now() - started;
      return report;
    };
    if (pre.alreadyDone) {
      report.plan = planMajor(pre, fast ? {} : undefined);
      return finish('already-done', `every member already runs PostgreSQL ${report.from}: nothing to do`);
    }
    if (input.dryRun && !fast) {
      report.plan = planMajor(pre);
      return finish('dry-run', 'dry run: the plan above; nothing was touched');
    }
    let next: Inventory;
    try {
      next = parseInventory(majorTargetInput(input.inventory, pre.build));
    } catch (err) {
      invalidInput(errorMessage(err));
    }
    const backupServers = withBackup ? { from: barmanServerOf(inv), to: barmanServerOf(next) } : undefined;
    report.plan = planMajor(pre, fast ? { backup: backupServers, backupBefore } : undefined);
    if (input.dryRun) return finish('dry-run', 'dry run: the plan above; nothing was touched');

    const u = new MajorUpgrade(rb, inv, next, pre, fast, backupBefore);
    await u.beforeThePoint(input, report);
    await u.afterThePoint(report);
    report.inventoryChange =
      `set versions.postgresql: '${next.versions.postgresql}' in the inventory file` +
      (inv.postgresql.dataDir !== next.postgresql.dataDir
        ? ` (data ${next.postgresql.dataDir}, bin ${next.postgresql.binDir}); the old data directories stay until you remove them`
        : '') +
      (backupServers
        ? `; set backup.server: '${backupServers.to}' (the Barman server of PostgreSQL ${next.postgresql.major}; ${backupServers.from} keeps the old major's backups, retired)`
        : '');
    return finish('upgraded', `every member runs PostgreSQL ${pgVersionText(pre.toNum)}`);
  });
}

/** Barman's server name as activities/render/barman.ts names it (pure, here for the workflow bundle). */
const barmanServerOf = (inv: Inventory) => inv.backup.server ?? inv.cluster;

/** Every settled result, or the first failure once all have settled (nothing left running behind it). */
async function allSettled<T extends readonly unknown[]>(
  work: readonly [...{ [K in keyof T]: Promise<T[K]> }],
): Promise<T> {
  const results = await Promise.allSettled(work);
  const bad = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

class MajorUpgrade {
  private readonly members: string[];
  private readonly backupHost?: string;
  /** When the stop began: writes are refused from there until the new leader is up. */
  private stopAt?: number;
  constructor(
    private readonly rb: Runbook,
    private readonly inv: Inventory,
    private readonly next: Inventory,
    private readonly pre: MajorPlan,
    /** The `major-fast-cutover` shape (else the first release's, for runs started before it). */
    private readonly fast: boolean,
    /** The `major-backup-before` step: a fresh backup of the old major before `pause`. */
    private readonly backupBefore = false,
  ) {
    this.members = [pre.leader, ...pre.replicas];
    if (fast) this.backupHost = inv.nodes.backup[0]?.hostname;
  }

  /** Up to the point of no return; any failure here brings the old major back and ends the run. */
  async beforeThePoint(input: UpgradeMajorInput, report: UpgradeMajorReport): Promise<void> {
    const { rb, inv, next, pre } = this;
    const leaderArgs = { inv, next, leader: pre.leader };
    let touched = false;
    try {
      await rb.step('install', () =>
        Promise.all(this.members.map((m) => act.majorInstall(at(inv, m), { next, member: m }))),
      );
      touched = true;
      report.check = await rb.step('check', () => check.majorCheck(at(inv, pre.leader), leaderArgs), {
        node: pre.leader,
      });
      // A fresh backup of the old major while it still serves: the last way back to it once the
      // new cluster has started (pg_upgrade --link shares the data files).
      const host = this.backupHost;
      if (host && this.backupBefore) {
        const info = workflowInfo();
        // its own name (a resumed run finds it again), never the after-backup's: `pre-` leads the slug
        const name = backupName(`pre-${info.workflowId}`, { startTime: info.startTime, runId: info.runId });
        const done = await rb.step('backup before', () => long.physicalBackup(at(inv, host), { inv, name }), {
          node: host,
        });
        report.backupBefore = { server: done.server, backupId: done.backupId, name: done.name };
      }
      await rb.step('pause', () => check.patroniSetPause(`cluster ${inv.cluster}`, { inv, pause: true }));
      this.stopAt = Date.now();
      // The short cutover: the leader (and every Patroni) stopped here; the replicas at its
      // checkpoint beside pg_upgrade, which needs only the leader stopped.
      const stopPhase = this.fast ? { phase: 'leader' as const } : {};
      report.stop = await rb.step('stop', () =>
        act.majorStop(`cluster ${inv.cluster}`, { inv, leader: pre.leader, ...stopPhase }),
      );
      if (input.approve) await rb.approval('pg_upgrade', { timeout: input.approvalTimeout ?? '1h' });
      const pgUpgrade = () =>
        rb.step('pg_upgrade', () => act.majorPgUpgrade(at(inv, pre.leader), leaderArgs), {
          node: pre.leader,
        });
      const configure = () =>
        rb.step('configure', () =>
          Promise.all(this.members.map((m) => act.installPostgres(at(inv, m), { inv: next, hostname: m }))),
        );
      if (this.fast) {
        // Nothing here waits for another: all of it while the cluster is stopped, at once. A
        // failure is acted on once all have ended (the rollback never races a configure).
        const host = this.backupHost;
        let replicasStop: MajorStopResult;
        [report.pgUpgrade, replicasStop] = await allSettled([
          pgUpgrade(),
          rb.step('stop replicas', () =>
            act.majorStop(`cluster ${inv.cluster}`, {
              inv,
              leader: pre.leader,
              phase: 'replicas',
              leaderCheckpoint: report.stop?.checkpoints[pre.leader],
            }),
          ),
          configure(),
          host
            ? rb.step('backup retire', () => check.majorBackupRetire(at(inv, host), { inv }), { node: host })
            : Promise.resolve(undefined),
        ]);
        report.stop = {
          checkpoints: { ...report.stop.checkpoints, ...replicasStop.checkpoints },
          stopped: [...report.stop.stopped, ...replicasStop.stopped],
          timings: report.stop.timings,
        };
      } else {
        report.pgUpgrade = await pgUpgrade();
        await configure();
      }
      await rb.step('remove from etcd', () => check.dcsCleanDelete(`cluster ${inv.cluster}`, { inv }));
    } catch (err) {
      if (!touched) throw err; // the pre-install refused or failed: nothing of the old cluster changed
      const why = errorMessage(err);
      await CancellationScope.nonCancellable(() => this.rollBack(why));
      if (isCancellation(err)) throw err;
      stopped(
        `before the point of no return: ${why}. Rolled back: PostgreSQL ${report.from} serves again ` +
          `(leader ${pre.leader}, replicas ${pre.replicas.join(', ')} streaming). Fix the cause, then start the upgrade again`,
        Failures.MajorUpgradeRolledBack,
      );
    }
  }

  /** The old major back: files, PostgreSQL, Patroni, resumed, healthy. */
  private async rollBack(why: string): Promise<void> {
    const { rb, inv, next, pre } = this;
    try {
      await rb.step('rollback: old data directory', () =>
        act.majorRestoreOld(at(inv, pre.leader), { inv, next, leader: pre.leader }),
      );
      await rb.step('rollback: old patroni.yml', () =>
        Promise.all(this.members.map((m) => act.installPostgres(at(inv, m), { inv, hostname: m }))),
      );
      for (const m of this.members)
        await rb.step(`rollback: start ${m}`, () => act.majorStartOld(at(inv, m), { inv, member: m }), {
          node: m,
        });
      await rb.step('rollback: resume', () =>
        check.patroniSetPause(`cluster ${inv.cluster}`, { inv, pause: false }),
      );
      await rb.step('rollback: healthy', () =>
        Promise.all(
          this.members.map((m) =>
            act.majorWaitMember(at(inv, m), {
              inv,
              member: m,
              role: m === pre.leader ? 'leader' : 'replica',
              leader: pre.leader,
              timeoutMs: 5 * 60_000,
            }),
          ),
        ),
      );
      const host = this.backupHost;
      if (host)
        await rb.step('rollback: backup server', () => node.installBackup(at(inv, host), { inv }), {
          node: host,
        });
    } catch (err) {
      if (isCancellation(err)) throw err;
      stopped(
        `before the point of no return (${why}), and the rollback failed: ${errorMessage(err)}. ` +
          `The old cluster's files are intact: on ${pre.leader} rename ${inv.postgresql.dataDir}/global/pg_control.old to pg_control if it is there, ` +
          `remove ${next.postgresql.dataDir}, then start Patroni on every member and resume (pgha status)`,
        Failures.MajorUpgradeFailed,
      );
    }
  }

  /** The new cluster: the leader first, then each replica re-cloned from it. */
  async afterThePoint(report: UpgradeMajorReport): Promise<void> {
    const { rb, inv, next, pre } = this;
    const leader = pre.leader;
    const where = (step: string) =>
      `past the point of no return (at ${step}): PostgreSQL ${report.from} cannot come back; the upgraded data is in ` +
      `${next.postgresql.dataDir} on ${leader}, the replicas' old directories are untouched`;
    let step = 'start leader';
    try {
      await rb.step(
        'start leader',
        async () => {
          if (!this.fast) {
            await act.startPatroni(at(inv, leader), { inv: next, hostname: leader });
            return act.majorWaitMember(at(inv, leader), {
              inv: next,
              member: leader,
              role: 'leader',
              leader,
            });
          }
          // Every HAProxy routes writes to the new leader the instant it takes them (its /primary
          // 200 and out of recovery), not at its next check: the switchover's hand-off.
          const routing = new CancellationScope();
          const routed = routing
            .run(() => act.guardianRoute(at(next, leader), { inv: next, leader, timeoutMs: 5 * 60_000 }))
            .then(
              () => undefined,
              (err: unknown) => {
                report.routeNote = `HAProxy left to its checks: ${errorMessage(err)}`;
              },
            );
          try {
            await act.startPatroni(at(inv, leader), { inv: next, hostname: leader });
            const up = await act.majorWaitMember(at(inv, leader), {
              inv: next,
              member: leader,
              role: 'leader',
              leader,
            });
            await routed;
            return up;
          } catch (err) {
            routing.cancel();
            throw err;
          }
        },
        { node: leader },
      );
      if (this.stopAt !== undefined) report.downMs = Date.now() - this.stopAt;
      for (const r of pre.replicas) {
        step = `re-clone ${r}`;
        await rb.step(
          step,
          async () => {
            await act.startPatroni(at(inv, r), { inv: next, hostname: r });
            return act.majorWaitMember(at(inv, r), { inv: next, member: r, role: 'replica', leader });
          },
          { node: r },
        );
      }
      step = 'resume';
      await rb.step('resume', () =>
        check.patroniSetPause(`cluster ${inv.cluster}`, { inv: next, pause: false }),
      );
      step = 'analyze';
      await rb.step('analyze', () => act.majorAnalyze(at(inv, leader), { inv: next, leader }), {
        node: leader,
      });
      if (this.fast) {
        step = 'extensions';
        report.extensions = (
          await rb.step(
            'extensions',
            () => check.majorUpdateExtensions(at(inv, leader), { inv: next, leader }),
            { node: leader },
          )
        ).updated;
      }
      step = 'verify';
      await rb.step('verify', () =>
        Promise.all(
          this.members.map((m) =>
            check.majorWaitMember(at(inv, m), {
              inv: next,
              member: m,
              role: m === leader ? 'leader' : 'replica',
              leader,
              timeoutMs: 60_000,
            }),
          ),
        ),
      );
      const host = this.backupHost;
      if (host) {
        step = 'backup install';
        await rb.step('backup install', () => node.installBackup(at(next, host), { inv: next }), {
          node: host,
        });
        step = 'backup roles';
        await rb.step('backup roles', () =>
          node.prepareBackupCluster(`backup roles on leader ${leader}`, { inv: next, leader }),
        );
        if (next.backup.synchronous) {
          step = 'backup synchronous';
          await rb.step('backup synchronous', () =>
            gate.ensureBackupSynchronous(`synchronous_standby_names on every member`, {
              inv: next,
              timeoutMs: 120_000,
            }),
          );
        }
        step = 'backup check';
        await rb.step('backup check', () =>
          gate.waitBarmanReady(`barman check on ${host}`, { inv: next, timeoutMs: 240_000 }),
        );
        step = 'backup';
        const info = workflowInfo();
        const name = backupName(info.workflowId, { startTime: info.startTime, runId: info.runId });
        const done = await rb.step('backup', () => long.physicalBackup(at(next, host), { inv: next, name }), {
          node: host,
        });
        report.backup = {
          server: done.server,
          retired: barmanServerOf(inv),
          backupId: done.backupId,
          name: done.name,
          endLsn: done.endLsn,
        };
      }
    } catch (err) {
      if (isCancellation(err)) throw err;
      stopped(
        `${where(step)}: ${errorMessage(err)}. Look at pgha status, then finish by hand or start the upgrade again`,
        Failures.MajorUpgradePastPoint,
      );
    }
  }
}
