/**
 * reinitReplica — the seed's "пересоздание реплики" (patronictl reinit) as a durable runbook:
 *
 *   pre-check (etcd quorum, a leader, the other members healthy; the target may be broken, that is
 *   why it is re-initialised; it must not be the leader) → a marker row written on the leader →
 *   POST /reinitialize to the replica (Patroni wipes its data directory and clones it again from
 *   the leader) → wait until it streams again within the lag bound → the marker row is on it.
 *
 * Refuses the leader (switch over first) and a member not in the inventory, naming the fix.
 * Resumable: the reinitialize step looks at the member's postmaster start time and state before
 * acting, so a resumed run never re-clones twice.
 */
import { ApplicationFailure, patched } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ClusterSnapshot, RestartResult } from '../activities/maintenance';
import type { InventoryInput } from '../runbooks/schema';
import { Failures } from '../runbooks/failures';
import { at, summarized } from './activity-options';
import { invalidInput, inventoryOf } from './inventory';
import { dryRunReport, type DryRunReport } from './dry-run';
import { Patches } from './patches';
import { runbook } from './steps';

export interface ReinitInput {
  inventory: InventoryInput;
  /** The replica to re-initialise, e.g. pg103. */
  member: string;
  /** Lag bound it must be back within (default maximum_lag_on_failover). */
  maxLagBytes?: number;
  /** Run the pre-check, return the ordered plan; touch nothing. */
  dryRun?: boolean;
}

export interface ReinitReport {
  member: string;
  leader: string;
  reinit: RestartResult;
  /** The row written on the leader before, found on the member after. */
  markerRow: string;
}

const check = summarized<Activities>('maintenance');
/** The re-clone: POST + a bounded wait (heartbeats every second); the retry looks before it acts. */
const long = summarized<Activities>('longWait');

export async function reinitReplica(input: ReinitInput): Promise<ReinitReport | DryRunReport> {
  const inv = inventoryOf(input);
  const known = inv.nodes.postgres.map((n) => n.hostname);
  if (typeof input.member !== 'string' || !known.includes(input.member)) {
    invalidInput(
      `member ${JSON.stringify(input.member)} is not in cluster ${inv.cluster}: name one of its replicas (members: ${known.join(', ')})`,
    );
  }
  const member = input.member;
  // Only a run asked for a dry run takes this branch (older histories never carry dryRun).
  const dry = input.dryRun === true && patched(Patches.dryRunPlans);
  const plan = dry ? ['pre-check'] : ['pre-check', 'marker row', 'reinitialize', 'marker row on the replica'];
  return runbook({ cluster: inv.cluster, notify: inv.notify, operation: 'reinit', plan }, async (rb) => {
    const snap: ClusterSnapshot = await rb.step('pre-check', () =>
      check.maintenancePrecheck(`cluster ${inv.cluster} (${member} may be broken)`, {
        inv,
        allowUnhealthy: [member],
        maxLagBytes: input.maxLagBytes,
      }),
    );
    if (snap.leader === member) {
      throw ApplicationFailure.nonRetryable(
        `${member} is the leader: a leader cannot be re-initialised. Switch over first ` +
          `(pgha switchover --cluster FILE --to ${snap.members.find((m) => m.role === 'replica')?.name ?? '<a replica>'}), ` +
          `then pgha reinit --member ${member}`,
        Failures.MaintenanceRefused,
      );
    }
    if (dry) {
      return dryRunReport(inv.cluster, 'reinit', [
        `pre-check passed: leader ${snap.leader}; ${member} is a replica`,
        `marker row: one row written on leader ${at(inv, snap.leader)}`,
        `reinitialize ${at(inv, member)}: POST /reinitialize (its data directory removed, cloned again from ${snap.leader}), then streaming within the lag bound`,
        `marker row on the replica: the row read on ${at(inv, member)}`,
      ]);
    }
    const before = snap.members.find((m) => m.name === member);
    const marker = await rb.step('marker row', () =>
      check.writeMarker(`on leader ${at(inv, snap.leader)}`, {
        inv,
        leader: snap.leader,
        note: `before reinit of ${member}`,
      }),
    );
    const reinit = await rb.step(
      'reinitialize',
      () =>
        long.reinitMember(`POST /reinitialize ${at(inv, member)} from leader ${snap.leader}`, {
          inv,
          member,
          leader: snap.leader,
          postmasterBefore: before?.postmasterStartTime ?? null,
          maxLagBytes: input.maxLagBytes,
        }),
      { node: member },
    );
    await rb.step(
      'marker row on the replica',
      () => check.waitRow(`marker row on ${at(inv, member)}`, { inv, member, id: marker.id }),
      {
        node: member,
      },
    );
    return { member, leader: snap.leader, reinit, markerRow: marker.id };
  });
}
