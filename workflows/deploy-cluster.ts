/**
 * deployCluster — the seed's installation as one durable runbook:
 *
 *   pre-flight → etcd on its 3 CTs → etcd health gate → PostgreSQL + Patroni on the 3 PostgreSQL CTs
 *   → the first node bootstraps as leader → the replicas join → replication gate → HAProxy on both
 *   CTs → end-to-end gate through HAProxy → (with a backup CT) Barman's roles and slot, Barman on
 *   the backup CT, `barman check` → (when asked) the cluster's guardian → the cluster's status.
 *
 * "etcd first, then Patroni, then HAProxy; check each" — as the seed says. Every step is idempotent:
 * run again on a deployed cluster, it changes nothing and restarts nothing.
 */
import {
  ApplicationFailure,
  CancellationScope,
  ParentClosePolicy,
  patched,
  startChild,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { Duration } from '@temporalio/common';
import type { Activities } from '../activities';
import { Failures } from '../runbooks/failures';
import type { InventoryInput } from '../runbooks/schema';
import { at, summarized } from './activity-options';
import { GUARDIAN_OPERATION, clusterGuardian, guardianWorkflowId } from './guardian';
import { inventoryOf, refuse } from './inventory';
import { PgCluster, PgOperation } from './messages';
import { Patches } from './patches';
import { dryRunReport, dryRunning } from './dry-run';
import { runbook } from './steps';
import type { PlanEntry } from './steps';

export interface DeployInput {
  /**
   * The inventory as in runbooks/clusters/*.yaml, with secrets as references (`file:` paths
   * absolute). `pgha deploy --cluster FILE` fills this in from the YAML file.
   */
  inventory: InventoryInput;
  /** Wait at the gate `before-bootstrap` for `pgha approve` (this long) before any PostgreSQL starts. */
  approvalTimeout?: Duration;
  /** Start the cluster's guardian at the end (`pgha deploy --guard`); default: the inventory's `guardian`. */
  guard?: boolean;
  /**
   * Barman's WAL receiver as the synchronous standby (`pgha deploy --synchronous` / `--no-synchronous`);
   * default: the inventory's `backup.synchronous`.
   */
  synchronousBackup?: boolean;
  /** Run the pre-flight and look for a leader, return the ordered plan per node; install and start nothing. */
  dryRun?: boolean;
}

/** What the `guardian` step did: started the guardian, or found it running (nothing done). */
export interface GuardianStart {
  workflowId: string;
  started: boolean;
}

/** Quick calls: each is one look-then-act on one node (each call names it: the timeline's summary). */
const node = summarized<Activities>('nodeStep');
/** Gates: bounded polls that heartbeat; they fail with what they saw, so retrying them is pointless. */
const gate = summarized<Activities>('gate');

export async function deployCluster(input: DeployInput) {
  const inv = inventoryOf(input);
  const first = inv.nodes.postgres[0];
  if (!first) refuse('no PostgreSQL nodes', Failures.InvalidInventory);
  const plan: PlanEntry[] = ['preflight', 'etcd', 'etcd healthy', 'postgres install'];
  if (input.approvalTimeout) plan.push({ gate: 'before-bootstrap' });
  plan.push('bootstrap leader', 'replicas join', 'replication', 'haproxy', 'end-to-end');
  // The backup CT (issue 10): only for an inventory that has one, and only in runs that know it.
  const withBackup = inv.nodes.backup.length > 0 && patched(Patches.deployBackupCt);
  if (withBackup) plan.push('backup roles', 'backup install', 'backup check');
  // Barman's receiver as the synchronous standby, or no longer (issue 10): in runs that know the step.
  const withBackupSync = withBackup && patched(Patches.deployBackupSynchronous);
  if (withBackupSync) plan.push('backup synchronous');
  // The guardian (issue 16): only when asked, and only in runs that know the step.
  const withGuardian = (input.guard ?? inv.guardian) === true && patched(Patches.deployGuardian);
  if (withGuardian) plan.push('guardian');
  plan.push('status');

  if (dryRunning(input)) {
    return runbook(
      { cluster: inv.cluster, operation: 'deploy', plan: ['preflight', 'leader'] },
      async (rb) => {
        const seen = await rb.step('preflight', () =>
          Promise.all(
            (['etcd', 'postgres', 'haproxy'] as const).flatMap((role) =>
              inv.nodes[role].map((n) =>
                node.preflightNode(`${role} ${at(inv, n.hostname)} (dry run)`, {
                  inv,
                  role,
                  hostname: n.hostname,
                }),
              ),
            ),
          ),
        );
        const existing = await rb.step('leader', () =>
          gate.findLeader(`cluster ${inv.cluster} (dry run)`, { inv }),
        );
        const all = (role: 'etcd' | 'postgres' | 'haproxy') =>
          at(inv, ...inv.nodes[role].map((n) => n.hostname));
        const leader = existing ?? first.hostname;
        const backupCt = inv.nodes.backup[0];
        const synchronous = input.synchronousBackup ?? inv.backup.synchronous;
        return dryRunReport(inv.cluster, 'deploy', [
          `preflight passed: ${seen.map((p) => `${p.node} ${p.resuming ? 'already this cluster’s (resumed: what is there is kept)' : 'new'}`).join(', ')}`,
          `etcd: install and start etcd ${inv.versions.etcd} on ${all('etcd')}`,
          `etcd healthy: wait until ${inv.nodes.etcd.length} members are healthy`,
          `postgres install: PostgreSQL ${inv.versions.postgresql} + Patroni ${inv.versions.patroni} on ${all('postgres')}`,
          input.approvalTimeout !== undefined &&
            `gate before-bootstrap: wait up to ${String(input.approvalTimeout)} for pgha approve before any PostgreSQL starts`,
          existing
            ? `bootstrap leader: ${at(inv, existing)} leads already: kept, Patroni ensured running there`
            : `bootstrap leader: Patroni started on ${at(inv, leader)}, which bootstraps the cluster; wait until it is the writable primary`,
          `replicas join: Patroni started on ${at(inv, ...inv.nodes.postgres.map((n) => n.hostname).filter((h) => h !== leader))}; each clones from ${leader}`,
          `replication: every replica streaming from ${leader} within ${inv.patroni.maximumLagOnFailover} B`,
          `haproxy: install and start HAProxy on ${all('haproxy')}`,
          `end-to-end: a write through every HAProxy lands on ${leader}`,
          withBackup && backupCt && `backup roles: Barman's roles, pg_hba lines and slot on leader ${leader}`,
          withBackup && backupCt && `backup install: Barman on ${at(inv, backupCt.hostname)}`,
          withBackup && backupCt && `backup check: barman check passes on ${backupCt.hostname}`,
          withBackupSync &&
            `backup synchronous: Barman's receiver ${synchronous ? 'the synchronous standby' : 'asynchronous'}`,
          withGuardian && `guardian: the cluster's guardian started (kept if it runs)`,
          `status: the cluster's status, healthy or the run fails`,
        ]);
      },
    );
  }

  return runbook({ cluster: inv.cluster, notify: inv.notify, operation: 'deploy', plan }, async (rb) => {
    const each = <T>(role: 'etcd' | 'postgres' | 'haproxy', fn: (hostname: string) => Promise<T>) =>
      Promise.all(inv.nodes[role].map((n) => fn(n.hostname)));
    const all = (role: 'etcd' | 'postgres' | 'haproxy') => at(inv, ...inv.nodes[role].map((n) => n.hostname));

    await rb.step('preflight', () =>
      Promise.all(
        (['etcd', 'postgres', 'haproxy'] as const).map((role) =>
          each(role, (hostname) =>
            node.preflightNode(`${role} ${at(inv, hostname)}`, { inv, role, hostname }),
          ),
        ),
      ),
    );

    await rb.step('etcd', () =>
      each('etcd', (hostname) => node.installEtcd(at(inv, hostname), { inv, hostname })),
    );
    await rb.step('etcd healthy', () =>
      gate.etcdWaitHealthy(all('etcd'), {
        endpoints: inv.nodes.etcd.map((n) => `http://${n.ip}:${inv.ports.etcdClient}`),
        expected: inv.nodes.etcd.length,
        waitTimeoutMs: 180_000,
      }),
    );

    await rb.step('postgres install', () =>
      each('postgres', (hostname) => node.installPostgres(at(inv, hostname), { inv, hostname })),
    );
    if (input.approvalTimeout) await rb.approval('before-bootstrap', { timeout: input.approvalTimeout });

    // A leader that already exists (a resumed or repeated deploy) is kept; otherwise the first node bootstraps.
    const leader = await rb.step('bootstrap leader', async () => {
      const existing = await gate.findLeader(`cluster ${inv.cluster}: ${all('postgres')}`, { inv });
      const name = existing ?? first.hostname;
      await node.startPatroni(`${at(inv, name)} (leader)`, { inv, hostname: name });
      return gate.waitPrimary(at(inv, name), { inv, hostname: name, timeoutMs: 300_000 });
    });

    await rb.step('replicas join', () =>
      Promise.all(
        inv.nodes.postgres
          .filter((n) => n.hostname !== leader.leader)
          .map((n) => node.startPatroni(`${at(inv, n.hostname)} (replica)`, { inv, hostname: n.hostname })),
      ),
    );
    await rb.step('replication', () =>
      gate.waitReplication(`leader ${at(inv, leader.leader)} → every replica`, {
        inv,
        leader: leader.leader,
        maxLagBytes: inv.patroni.maximumLagOnFailover,
        timeoutMs: 480_000,
      }),
    );

    await rb.step('haproxy', () =>
      each('haproxy', (hostname) => node.installHaproxy(at(inv, hostname), { inv, hostname })),
    );
    await rb.step('end-to-end', () =>
      gate.checkThroughHaproxy(`${all('haproxy')} → leader ${leader.leader}`, {
        inv,
        leader: leader.leader,
        timeoutMs: 60_000,
      }),
    );

    if (withBackup) {
      // Barman connects through HAProxy's write port: its roles, pg_hba lines and slot first.
      await rb.step('backup roles', () =>
        node.prepareBackupCluster(`backup roles on leader ${leader.leader}`, { inv, leader: leader.leader }),
      );
      await rb.step('backup install', () =>
        node.installBackup(at(inv, inv.nodes.backup[0]!.hostname), { inv }),
      );
      await rb.step('backup check', () =>
        gate.waitBarmanReady(`barman check on ${inv.nodes.backup[0]!.hostname}`, { inv, timeoutMs: 240_000 }),
      );
    }
    if (withBackupSync) {
      // After barman check passed: from here on, with synchronous on, every commit waits for Barman.
      const synchronous = input.synchronousBackup ?? inv.backup.synchronous;
      await rb.step('backup synchronous', () =>
        gate.ensureBackupSynchronous(
          synchronous
            ? `synchronous_standby_names = Barman's receiver on every member, sync on the leader`
            : `Barman's receiver asynchronous (not in synchronous_standby_names)`,
          { inv: { ...inv, backup: { ...inv.backup, synchronous } }, timeoutMs: 120_000 },
        ),
      );
    }

    if (withGuardian) await rb.step('guardian', () => startGuardianOnce(input.inventory, inv.cluster));

    const status = await rb.step('status', () => gate.clusterStatus(`cluster ${inv.cluster}`, { inv }));
    // A deploy that ends with a cluster not healthy is not a success (scripts/up and CI rely on it).
    if (status.verdict.status !== 'healthy' && patched(Patches.deployFailsUnhealthy)) {
      throw ApplicationFailure.nonRetryable(
        `cluster ${inv.cluster} was deployed but is ${status.verdict.status}: ${status.verdict.reasons.join('; ') || 'no reason given'}. ` +
          `Look with pgha status --cluster FILE, fix what it names, then run pgha deploy again (it is idempotent)`,
        Failures.DeployUnhealthy,
        status.verdict,
      );
    }
    return status;
  });
}

/**
 * The cluster's guardian as an abandoned child (it outlives the deploy; a cancelled deploy does not
 * stop it): one per cluster by its workflow id, so a guardian already running is left as it is.
 */
async function startGuardianOnce(inventory: InventoryInput, cluster: string): Promise<GuardianStart> {
  const workflowId = guardianWorkflowId(cluster);
  try {
    await CancellationScope.nonCancellable(() =>
      startChild(clusterGuardian, {
        workflowId,
        args: [{ inventory }],
        parentClosePolicy: ParentClosePolicy.ABANDON,
        typedSearchAttributes: [
          { key: PgCluster, value: cluster },
          { key: PgOperation, value: GUARDIAN_OPERATION },
        ],
      }),
    );
    return { workflowId, started: true };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { workflowId, started: false };
    throw err;
  }
}
