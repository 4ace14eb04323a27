/**
 * etcdReplace — a member that is gone for good (its CT destroyed, its data lost) replaced by a
 * fresh CT, as etcd's runtime reconfiguration guide says and the seed leaves to the operator:
 *
 *   pre-check (the member is not healthy; the others alone are a quorum; etcd's member list is the
 *   inventory's; the fresh CT runs, belongs to no other cluster, holds no etcd data)
 *   → `etcdctl member remove <dead>` → `etcdctl member add --peer-urls=<fresh>` → etcd installed in
 *   the fresh CT with ETCD_INITIAL_CLUSTER_STATE=existing (deployCluster's installEtcd) → wait until
 *   it joined: every member healthy, one leader, the new one caught up; Patroni's leader key there.
 *
 * Remove before add: with 3 members, adding a 4th first would need 3 of 4 for a quorum while the
 * dead one still counts. Each step looks before it acts (member list, peer URLs): a resumed or
 * retried run never removes or adds twice. With `vmid`/`ip` the member moves to another CT or
 * address (the inventory is checked with them before anything runs; `pgha etcd replace` writes
 * them into the operator's file only when the run succeeded).
 */
import type { Activities } from '../activities';
import type { EtcdReplacePlan, EtcdReplaceResult } from '../activities/etcd-ops';
import type { InventoryInput } from '../runbooks/schema';
import { at, summarized } from './activity-options';
import { check, checkEtcdMembers, member as memberStep } from './etcd';
import { invalidInput, inventoryOf } from './inventory';
import { dryRunReport, dryRunning, type DryRunReport } from './dry-run';
import { runbook } from './steps';

export interface EtcdReplaceInput {
  inventory: InventoryInput;
  /** The etcd member to replace, e.g. etcd3. */
  member: string;
  /** The fresh CT's vmid (default: the member's own). */
  vmid?: number;
  /** The fresh CT's address (default: the member's own). */
  ip?: string;
  /** Run the pre-check, return the ordered plan; remove, add and install nothing. */
  dryRun?: boolean;
}

export interface EtcdReplaceReport {
  plan: EtcdReplacePlan;
  removed: 'removed' | 'already-removed' | 'not-listed';
  added: 'added' | 'found-added' | 'already-replaced';
  joined: EtcdReplaceResult;
}

const node = summarized<Activities>('nodeStep');

/** The inventory document with `member` at another vmid / address (pure: the workflow and the CLI). */
export function withEtcdMemberAt(
  inventory: InventoryInput,
  member: string,
  to: { vmid?: number; ip?: string },
): InventoryInput {
  const etcd = (inventory.nodes?.etcd ?? []).map((n) =>
    n.hostname === member
      ? { ...n, ...(to.vmid !== undefined && { vmid: to.vmid }), ...(to.ip !== undefined && { ip: to.ip }) }
      : n,
  );
  return { ...inventory, nodes: { ...inventory.nodes, etcd } } as InventoryInput;
}

export async function etcdReplace(input: EtcdReplaceInput): Promise<EtcdReplaceReport | DryRunReport> {
  const inv = inventoryOf(input);
  if (typeof input.member !== 'string') invalidInput('member: name the etcd member to replace, e.g. etcd3');
  checkEtcdMembers(inv, [input.member]);
  const name = input.member;
  const next = inventoryOf({ inventory: withEtcdMemberAt(input.inventory, name, input) });
  const plan = [
    'pre-check',
    `member remove ${name}`,
    `member add ${name}`,
    `install ${name}`,
    `join ${name}`,
  ];
  const dry = dryRunning(input);
  return runbook(
    {
      cluster: inv.cluster,
      notify: dry ? undefined : inv.notify,
      operation: 'etcd-replace',
      plan: dry ? ['pre-check'] : plan,
    },
    async (rb) => {
      const args = { inv, next, member: name };
      const seen = await rb.step('pre-check', () => check.etcdReplacePrecheck(at(inv, name), args), {
        node: name,
      });
      if (dry) {
        const fresh = `${name} (CT ${seen.target.vmid}, ${seen.target.ip})`;
        return dryRunReport(inv.cluster, 'etcd-replace', [
          `pre-check passed: leader ${seen.leader ?? '(none)'}; ${seen.seen.join('; ')}`,
          ...(seen.alreadyReplaced
            ? [
                `already replaced: ${fresh} is a healthy member (id ${seen.joinedId ?? '?'}); nothing to remove, add or install`,
              ]
            : [
                seen.oldId !== undefined
                  ? `member remove ${name}: etcdctl member remove ${seen.oldId} (the dead member)`
                  : `member remove ${name}: not listed any more, nothing to remove`,
                seen.pendingId !== undefined
                  ? `member add ${name}: already added (id ${seen.pendingId}), kept`
                  : `member add ${name}: etcdctl member add ${name} --peer-urls=http://${seen.target.ip}:${inv.ports.etcdPeer}`,
                `install ${fresh}: etcd installed with ETCD_INITIAL_CLUSTER_STATE=existing, started`,
              ]),
          `join ${name}: every member healthy, one leader, ${name} caught up; Patroni's leader key readable there`,
        ]);
      }
      let removed: EtcdReplaceReport['removed'] = 'not-listed';
      let added: EtcdReplaceReport['added'] = 'already-replaced';
      let memberId: string | undefined;
      if (!seen.alreadyReplaced) {
        const oldId = seen.oldId;
        if (oldId !== undefined) {
          removed = (
            await rb.step(
              `member remove ${name}`,
              () => check.etcdReplaceRemove(at(inv, name), { ...args, oldId }),
              {
                node: name,
              },
            )
          ).action;
        }
        const add = await rb.step(
          `member add ${name}`,
          () => check.etcdReplaceAdd(at(inv, name), { ...args, oldId }),
          {
            node: name,
          },
        );
        added = add.action;
        memberId = add.id;
        await rb.step(
          `install ${name}`,
          () => node.installEtcd(at(next, name), { inv: next, hostname: name, join: true }),
          { node: name },
        );
      }
      const joined = await rb.step(
        `join ${name}`,
        () =>
          memberStep.etcdReplaceJoined(at(next, name), {
            next,
            member: name,
            memberId: memberId ?? seen.joinedId!,
          }),
        { node: name },
      );
      return { plan: seen, removed, added, joined };
    },
  );
}
