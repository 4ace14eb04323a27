/**
 * etcdReplace's activities: a member that is gone for good removed from etcd (`etcdctl member
 * remove`), a fresh CT added in its place (`etcdctl member add`), then — after installEtcd joined it
 * with ETCD_INITIAL_CLUSTER_STATE=existing — a bounded wait until it is healthy and caught up.
 *
 * `inv` is the inventory as it is; `next` the same with the member's new vmid/ip (the same node when
 * neither changes). Each step looks at etcd's member list before it acts, so a retry after a crash
 * anywhere ends in the same state: a removed member is not looked for again, and a member added but
 * never started (etcd lists it with an empty name) is found by its peer URL and not added twice.
 */
import type { Inventory, Node } from '../../runbooks/schema';
import { etcdEndpoint } from '../../runbooks/topology';
import type { EtcdEndpointHealth, EtcdMember } from '../etcd';
import { preflightNode } from '../nodes/preflight';
import { PollTimeoutError, pollUntil } from '../poll';
import { etcdNode, fail, invocationOf, majority, refuse } from './common';
import type { EtcdOpsDeps } from './types';

export interface EtcdReplaceArgs {
  inv: Inventory;
  next: Inventory;
  member: string;
}

export interface EtcdReplacePlan {
  member: string;
  target: { vmid: number; ip: string };
  /** The dead member's id (hex) in etcd's member list; absent when it is not listed any more. */
  oldId?: string;
  /** A member already added for the target (an earlier run died before it started): its id. */
  pendingId?: string;
  /** The target is a healthy member of that name already (an earlier run got that far). */
  alreadyReplaced: boolean;
  /** Its id then. */
  joinedId?: string;
  leader: string | null;
  /** What the pre-check saw, one line per member. */
  seen: string[];
}

export interface EtcdReplaceResult {
  member: string;
  memberId: string;
  leader: string;
  /** Every member afterwards, as etcd's own status reports it. */
  members: { name: string; healthy: boolean; raftTerm?: string; raftIndex?: string }[];
  /** The holder of Patroni's leader key afterwards. */
  patroniLeader: string;
  tookMs: number;
}

const peerUrl = (inv: Inventory, n: Node) => `http://${n.ip}:${inv.ports.etcdPeer}`;
const others = (inv: Inventory, member: string) => inv.nodes.etcd.filter((n) => n.hostname !== member);

function describe(h: EtcdEndpointHealth | undefined): string {
  if (!h) return 'not asked';
  return h.healthy
    ? `healthy (id ${h.memberId ?? '?'}, ${h.isLeader ? 'leader, ' : ''}raft index ${h.raftIndex ?? '?'})`
    : `unhealthy (${h.error ?? '?'})`;
}

/**
 * A member just lost may have been etcd's leader: the others elect a new one within an election
 * timeout or a few (longer on a loaded host; CI saw both "no leader" 1-3 s after the CT was
 * destroyed). The others are asked again for this long before a refusal.
 */
const QUORUM_WAIT_MS = 30_000;

/** The health of the other members (by the inventory's endpoints): refuses below a quorum. */
async function othersWithQuorum(deps: EtcdOpsDeps, inv: Inventory, member: string, doing: string) {
  const rest = others(inv, member);
  const need = majority(inv.nodes.etcd.length);
  const ask = async () => {
    const health = await deps.etcd.etcdEndpointHealth({
      endpoints: rest.map((n) => etcdEndpoint(inv, n.hostname)),
    });
    return { health, healthy: rest.filter((n, i) => health[i]?.healthy) };
  };
  const waitMs = deps.quorumWaitMs ?? QUORUM_WAIT_MS;
  const said = (h: EtcdEndpointHealth[]) => rest.map((n, i) => `${n.hostname} ${describe(h[i])}`).join('; ');
  let seen: Awaited<ReturnType<typeof ask>>;
  try {
    seen = await pollUntil(
      { what: `a quorum of etcd without ${member}`, timeoutMs: waitMs, intervalMs: 1000 },
      async () => {
        const s = await ask();
        return { done: s.healthy.length >= need, value: s, describe: said(s.health) };
      },
    );
  } catch (err) {
    if (!(err instanceof PollTimeoutError)) throw err;
    seen = err.last as Awaited<ReturnType<typeof ask>>;
  }
  const { health, healthy } = seen;
  if (healthy.length < need) {
    refuse(
      `${doing} needs a quorum of ${need} of ${inv.nodes.etcd.length} etcd members without ${member}; ` +
        `healthy: ${healthy.length} (${said(health)}; asked for ${waitMs / 1000} s). ` +
        'Nothing was done. Bring a member back first; if the quorum is lost for good, restore etcd from a ' +
        'snapshot (runbooks/README.md, "Restoring etcd from a snapshot")',
    );
  }
  return { healthy, endpoints: healthy.map((n) => etcdEndpoint(inv, n.hostname)), health };
}

/**
 * What may be done: the member is not healthy, the others alone are a quorum, etcd's member list
 * holds exactly the other members (plus the dead one, plus at most our own added-but-unstarted
 * one), and the target CT runs, belongs to no other cluster and holds no etcd data.
 */
export async function etcdReplacePrecheck(
  deps: EtcdOpsDeps,
  args: EtcdReplaceArgs,
): Promise<EtcdReplacePlan> {
  const { inv, next, member } = args;
  const node = etcdNode(inv, member);
  const target = etcdNode(next, member);
  const oldEndpoint = etcdEndpoint(inv, member);
  const newEndpoint = etcdEndpoint(next, member);
  const newPeer = peerUrl(next, target);
  const [oldHealth, newHealth] = await deps.etcd.etcdEndpointHealth({
    endpoints: oldEndpoint === newEndpoint ? [oldEndpoint] : [oldEndpoint, newEndpoint],
  });
  const moved = target.vmid !== node.vmid || target.ip !== node.ip;
  const healthyRefusal = () =>
    refuse(
      `${member} is healthy: ${oldEndpoint} ${describe(oldHealth)}. Nothing was done. ` +
        `pgha etcd replace is for a member that is gone for good (its CT destroyed or its data lost); ` +
        `to restart a member use pgha etcd restart --member ${member}`,
    );
  if (!moved && oldHealth?.healthy) healthyRefusal();
  const { endpoints, health } = await othersWithQuorum(deps, inv, member, `replacing ${member}`);
  const seen = [
    ...others(inv, member).map((n, i) => `${n.hostname}: ${describe(health[i])}`),
    `${member} (CT ${node.vmid}, ${oldEndpoint}): ${describe(oldHealth)}`,
    ...(newHealth ? [`target (CT ${target.vmid}, ${newEndpoint}): ${describe(newHealth)}`] : []),
  ];
  const list: EtcdMember[] = await deps.etcd.etcdMembers({ endpoints });
  const leaderId = health.find((h) => h.healthy)?.leaderId;
  const leader = list.find((m) => m.id === leaderId)?.name ?? null;
  const listed = list.map((m) => `${m.name || '(unstarted)'} ${m.id} ${m.peerUrls.join(',')}`).join('; ');
  const mine = list.find((m) => m.name === member);

  // Done already: an earlier run joined the target (a new address answering as the member, or
  // etcd running in the new CT at the same address), and the old member is not listed any more.
  if (moved && mine?.peerUrls.includes(newPeer)) {
    const answering =
      target.ip !== node.ip
        ? newHealth?.healthy === true && newHealth.memberId === mine.id
        : oldHealth?.healthy === true &&
          oldHealth.memberId === mine.id &&
          (await invocationOf(deps, next, target)) !== null;
    if (answering) {
      return {
        member,
        target: { vmid: target.vmid, ip: target.ip },
        alreadyReplaced: true,
        joinedId: mine.id,
        leader,
        seen,
      };
    }
  }
  if (oldHealth?.healthy) healthyRefusal();
  const names = new Set(inv.nodes.etcd.map((n) => n.hostname));
  const missing = others(inv, member).filter((n) => !list.some((m) => m.name === n.hostname));
  const strangers = list.filter((m) => m.name !== '' && !names.has(m.name));
  const unstarted = list.filter((m) => m.name === '');
  const pending = unstarted.find((m) => m.peerUrls.includes(newPeer));
  const foreign = unstarted.filter((m) => m !== pending);
  if (missing.length || strangers.length || foreign.length) {
    refuse(
      `etcd's member list (${listed}) is not the inventory's etcd members plus the one to replace: ` +
        [
          missing.length ? `missing ${missing.map((n) => n.hostname).join(', ')}` : '',
          strangers.length ? `not in the inventory: ${strangers.map((m) => m.name).join(', ')}` : '',
          foreign.length
            ? `added but never started: ${foreign.map((m) => `${m.id} (${m.peerUrls.join(',')})`).join(', ')} ` +
              `— remove it (etcdctl member remove ${foreign[0]!.id}) or replace with --ip of that address`
            : '',
        ]
          .filter(Boolean)
          .join('; ') +
        '. Nothing was done',
    );
  }
  // The target CT: runs, is not another cluster's, holds no etcd data (deploy's own pre-flight).
  let hasData: boolean;
  try {
    ({ hasData } = await preflightNode(
      { shellFor: deps.hostFor },
      { inv: next, role: 'etcd', hostname: member },
    ));
  } catch (err) {
    refuse(
      `the target CT ${target.vmid} for ${member}: ${(err as Error).message}. Nothing was done ` +
        '(on Proxmox create it from the template; in the lab: npx pgha lab up)',
    );
  }
  if (hasData && !pending) {
    refuse(
      `CT ${target.vmid} (${member}) holds etcd data at ${next.etcd.dataDir}/member, and etcd lists no member ` +
        `added for it: a replacement joins with an empty data dir. Nothing was done. If it is the old ` +
        `member's data, destroy and recreate the CT, or move it away ` +
        `(pct exec ${target.vmid} -- mv ${next.etcd.dataDir}/member ${next.etcd.dataDir}/member.old), and run again`,
    );
  }
  return {
    member,
    target: { vmid: target.vmid, ip: target.ip },
    oldId: mine?.id,
    pendingId: pending?.id,
    alreadyReplaced: false,
    leader,
    seen,
  };
}

/** `etcdctl member remove <old id>`, unless it is gone already; then a bounded wait for the list. */
export async function etcdReplaceRemove(
  deps: EtcdOpsDeps,
  args: EtcdReplaceArgs & { oldId: string },
): Promise<{ action: 'removed' | 'already-removed' }> {
  const { inv, member, oldId } = args;
  const { endpoints } = await othersWithQuorum(deps, inv, member, `removing ${member}`);
  const list = await deps.etcd.etcdMembers({ endpoints });
  if (!list.some((m) => m.id === oldId)) return { action: 'already-removed' };
  const [self] = await deps.etcd.etcdEndpointHealth({ endpoints: [etcdEndpoint(inv, member)] });
  if (self?.healthy && self.memberId === oldId) {
    refuse(`${member} came back (${describe(self)}) before it was removed; nothing was done`);
  }
  await deps.admin.memberRemove({ endpoints, id: oldId });
  await pollUntil(
    { what: `member ${oldId} (${member}) gone from etcd's member list`, timeoutMs: 30_000, intervalMs: 500 },
    async () => {
      const l = await deps.etcd.etcdMembers({ endpoints });
      return {
        done: !l.some((m) => m.id === oldId),
        value: null,
        describe: l.map((m) => `${m.name || '(unstarted)'} ${m.id}`).join(', '),
      };
    },
  );
  return { action: 'removed' };
}

/**
 * `etcdctl member add --peer-urls=<target>`, unless a member with that peer URL is listed already
 * (a retry after a crash between the add and the start: etcd lists it with an empty name).
 */
export async function etcdReplaceAdd(
  deps: EtcdOpsDeps,
  args: EtcdReplaceArgs & { oldId?: string },
): Promise<{ id: string; action: 'added' | 'found-added' }> {
  const { next, member, oldId } = args;
  const peer = peerUrl(next, etcdNode(next, member));
  const { endpoints } = await othersWithQuorum(deps, next, member, `adding ${member}`);
  const list = await deps.etcd.etcdMembers({ endpoints });
  if (oldId && list.some((m) => m.id === oldId))
    fail(`the old member ${oldId} (${member}) is still listed: it was not removed`);
  const found = list.find((m) => m.peerUrls.includes(peer));
  if (found) {
    if (found.name !== '' && found.name !== member)
      fail(`${peer} belongs to member ${found.name} (${found.id}), not ${member}`);
    return { id: found.id, action: 'found-added' };
  }
  return { id: await deps.admin.memberAdd({ endpoints, peerUrl: peer }), action: 'added' };
}

/**
 * The post-check, a bounded wait: the new member answers as itself (its id), is listed under its
 * name, is healthy and caught up with the leader's raft index; every member healthy with one
 * leader, the member list exactly the inventory's members; Patroni's leader key there.
 */
export async function etcdReplaceJoined(
  deps: EtcdOpsDeps,
  args: { next: Inventory; member: string; memberId: string; waitTimeoutMs?: number },
): Promise<EtcdReplaceResult> {
  const { next, member, memberId } = args;
  const started = Date.now();
  const endpoints = next.nodes.etcd.map((n) => etcdEndpoint(next, n.hostname));
  const want = next.nodes.etcd.map((n) => n.hostname).sort();
  const seen = await pollUntil(
    {
      what: `${member} (etcd member ${memberId}) joined, healthy and caught up, with every member healthy`,
      timeoutMs: args.waitTimeoutMs ?? 180_000,
      intervalMs: 500,
    },
    async () => {
      const health = await deps.etcd.etcdEndpointHealth({ endpoints });
      const list = await deps.etcd.etcdMembers({ endpoints }).catch(() => [] as EtcdMember[]);
      const me = health[next.nodes.etcd.findIndex((n) => n.hostname === member)]!;
      const leaderIds = new Set(health.filter((h) => h.healthy).map((h) => h.leaderId));
      const leaderHealth = health.find((h) => h.healthy && h.isLeader);
      const names = list.map((m) => m.name).sort();
      const done =
        health.every((h) => h.healthy) &&
        leaderIds.size === 1 &&
        me.memberId === memberId &&
        names.join(',') === want.join(',') &&
        leaderHealth?.raftIndex !== undefined &&
        me.raftIndex !== undefined &&
        BigInt(me.raftIndex) >= BigInt(leaderHealth.raftIndex);
      return {
        done,
        value: { health, list, leaderId: leaderHealth?.memberId },
        describe:
          next.nodes.etcd.map((n, i) => `${n.hostname} ${describe(health[i])}`).join('; ') +
          `; member list: ${list.map((m) => m.name || `(unstarted ${m.id})`).join(', ')}`,
      };
    },
  );
  const leader = seen.list.find((m) => m.id === seen.leaderId)?.name ?? '?';
  const key = await deps.etcd.etcdPatroniLeaderKey({
    endpoints,
    namespace: next.patroni.namespace,
    scope: next.patroni.scope,
  });
  if (!key.value) fail(`${member} joined, but Patroni's leader key ${key.key} is missing`);
  return {
    member,
    memberId,
    leader,
    members: next.nodes.etcd.map((n, i) => ({
      name: n.hostname,
      healthy: seen.health[i]!.healthy,
      raftTerm: seen.health[i]!.raftTerm,
      raftIndex: seen.health[i]!.raftIndex,
    })),
    patroniLeader: key.value,
    tookMs: Date.now() - started,
  };
}
