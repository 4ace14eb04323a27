/**
 * deployCluster — the seed's installation as one durable runbook:
 *
 *   pre-flight → etcd on its 3 CTs → etcd health gate → PostgreSQL + Patroni on the 3 PostgreSQL CTs
 *   → the first node bootstraps as leader → the replicas join → replication gate → HAProxy on both
 *   CTs → end-to-end gate through HAProxy → (with a backup CT) Barman's roles and slot, Barman on
 *   the backup CT, `barman check` → the cluster's status.
 *
 * "etcd first, then Patroni, then HAProxy; check each" — as the seed says. Every step is idempotent:
 * run again on a deployed cluster, it changes nothing and restarts nothing.
 */
import { ApplicationFailure, patched, proxyActivities } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { Activities } from '../activities';
import { Failures } from '../runbooks/failures';
import type { InventoryInput } from '../runbooks/schema';
import { activityOptions } from './activity-options';
import { inventoryOf, refuse } from './inventory';
import { Patches } from './patches';
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
}

/** Quick calls: each is one look-then-act on one node. */
const node = proxyActivities<Activities>(activityOptions.nodeStep);
/** Gates: bounded polls that heartbeat; they fail with what they saw, so retrying them is pointless. */
const gate = proxyActivities<Activities>(activityOptions.gate);

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
  plan.push('status');

  return runbook({ cluster: inv.cluster, operation: 'deploy', plan }, async (rb) => {
    const each = <T>(role: 'etcd' | 'postgres' | 'haproxy', fn: (hostname: string) => Promise<T>) =>
      Promise.all(inv.nodes[role].map((n) => fn(n.hostname)));

    await rb.step('preflight', () =>
      Promise.all(
        (['etcd', 'postgres', 'haproxy'] as const).map((role) =>
          each(role, (hostname) => node.preflightNode({ inv, role, hostname })),
        ),
      ),
    );

    await rb.step('etcd', () => each('etcd', (hostname) => node.installEtcd({ inv, hostname })));
    await rb.step('etcd healthy', () =>
      gate.etcdWaitHealthy({
        endpoints: inv.nodes.etcd.map((n) => `http://${n.ip}:${inv.ports.etcdClient}`),
        expected: inv.nodes.etcd.length,
        waitTimeoutMs: 180_000,
      }),
    );

    await rb.step('postgres install', () =>
      each('postgres', (hostname) => node.installPostgres({ inv, hostname })),
    );
    if (input.approvalTimeout) await rb.approval('before-bootstrap', { timeout: input.approvalTimeout });

    // A leader that already exists (a resumed or repeated deploy) is kept; otherwise the first node bootstraps.
    const leader = await rb.step('bootstrap leader', async () => {
      const existing = await gate.findLeader({ inv });
      const name = existing ?? first.hostname;
      await node.startPatroni({ inv, hostname: name });
      return gate.waitPrimary({ inv, hostname: name, timeoutMs: 300_000 });
    });

    await rb.step('replicas join', () =>
      Promise.all(
        inv.nodes.postgres
          .filter((n) => n.hostname !== leader.leader)
          .map((n) => node.startPatroni({ inv, hostname: n.hostname })),
      ),
    );
    await rb.step('replication', () =>
      gate.waitReplication({
        inv,
        leader: leader.leader,
        maxLagBytes: inv.patroni.maximumLagOnFailover,
        timeoutMs: 480_000,
      }),
    );

    await rb.step('haproxy', () => each('haproxy', (hostname) => node.installHaproxy({ inv, hostname })));
    await rb.step('end-to-end', () =>
      gate.checkThroughHaproxy({ inv, leader: leader.leader, timeoutMs: 60_000 }),
    );

    if (withBackup) {
      // Barman connects through HAProxy's write port: its roles, pg_hba lines and slot first.
      await rb.step('backup roles', () => node.prepareBackupCluster({ inv, leader: leader.leader }));
      await rb.step('backup install', () => node.installBackup({ inv }));
      await rb.step('backup check', () => gate.waitBarmanReady({ inv, timeoutMs: 240_000 }));
    }

    const status = await rb.step('status', () => gate.clusterStatus({ inv }));
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
