/**
 * Routing writes through every HAProxy with its runtime API: the sessions the hand-off keeps open,
 * one command on all of them at once, and "writes to this leader" as one idempotent step.
 * `set server ... health` only forces the operational state: the health checks keep running and
 * stay in charge afterwards.
 */
import type { Inventory } from '../../runbooks/schema';
import { memberNames } from '../../runbooks/topology';
import { openRuntimeSessions, settleNode, socatArgv } from '../haproxy';
import type { HaproxyNode, RuntimeSessions, RuntimeStream } from '../haproxy';
import { ProxmoxHost } from '../proxmox';
import type { PctSession, ProxmoxInventorySection } from '../proxmox';
import { HAPROXY_ADMIN_SOCKET, HAPROXY_READ_BACKEND, HAPROXY_WRITE_BACKEND } from '../render';
import { primary200 } from './cluster';
import type { SwitchoverDeps } from './types';

/** The inventory's HAProxy nodes as the runtime API addresses them. */
export const haproxyNodes = (inv: Inventory): HaproxyNode[] =>
  inv.nodes.haproxy.map((n) => ({ name: n.hostname, vmid: n.vmid, socket: HAPROXY_ADMIN_SOCKET }));

/**
 * A `prompt`-mode runtime session per HAProxy node, over proxmox openSession (the deps' shared
 * transport, or a connection of their own that closes with them). A node whose CT `pct status`
 * reports stopped is left out (named in `down`): pgha routes through the HAProxy nodes that run.
 */
export async function sessionsFor(deps: SwitchoverDeps, inv: Inventory): Promise<RuntimeSessions> {
  if (deps.openRuntimeSessions) return deps.openRuntimeSessions(inv);
  const section = inv.proxmox as ProxmoxInventorySection;
  const host = deps.proxmoxFor ? await deps.proxmoxFor(section) : await ProxmoxHost.fromInventory(section);
  const own = !deps.proxmoxFor;
  try {
    return await openRuntimeSessions(
      haproxyNodes(inv),
      (node) => host.openSession(node.vmid!, socatArgv(node)).then(runtimeStream),
      own ? () => setTimeout(() => host.close(), 200).unref() : undefined,
      async (node) => (await host.status(node.vmid!)) === 'stopped',
    );
  } catch (err) {
    if (own) host.close();
    throw err;
  }
}

/** A pct session as the byte stream a runtime session runs over; ending it also kills what is left in the CT. */
function runtimeStream(s: PctSession): RuntimeStream {
  return {
    on: (event: 'data' | 'close', fn: (d: Buffer) => void) => s.stream.on(event, fn),
    stderr: s.stderr,
    write: (x: string) => s.stream.write(x),
    end: (x?: string) => {
      s.stream.end(x);
      s.close().catch(() => undefined);
    },
  };
}

/** One command on every session; any answer but '' is an error naming the node. */
export async function all(s: RuntimeSessions, cmd: string): Promise<void> {
  const answers = await Promise.all(s.sessions.map(async (x) => [x.node, await x.command(cmd)] as const));
  const bad = answers.filter(([, a]) => a !== '');
  if (bad.length) throw new Error(`haproxy: ${cmd}: ${bad.map(([n, a]) => `${n}: ${a}`).join('; ')}`);
}

/** The old leader out of the write backend at once: drained, forced down, its sessions cut. */
export async function cutOldLeader(s: RuntimeSessions, old: string): Promise<void> {
  // Drained, not just marked down: while Patroni still holds its key the old leader's /primary
  // can answer 200 again and its check (rise 1) would put it back UP — HAProxy would then send
  // connections to a stopped PostgreSQL and retry them for seconds. A drained server takes no
  // new connection whatever its checks say; the checks keep running (verify restores `ready`).
  await all(s, `set server ${HAPROXY_WRITE_BACKEND}/${old} state drain`);
  await all(s, `set server ${HAPROXY_WRITE_BACKEND}/${old} health down`);
  await all(s, `shutdown sessions server ${HAPROXY_WRITE_BACKEND}/${old}`);
}

/** The candidate into the write backend (ready: an earlier run may have drained it), out of the read one. */
export async function admitLeader(s: RuntimeSessions, leader: string, afterUp?: () => void): Promise<void> {
  await all(s, `set server ${HAPROXY_WRITE_BACKEND}/${leader} state ready`);
  await all(s, `set server ${HAPROXY_WRITE_BACKEND}/${leader} health up`);
  afterUp?.();
  await all(s, `set server ${HAPROXY_READ_BACKEND}/${leader} health down`);
}

/**
 * A member that is not the leader back under its checks in the write backend: forced DOWN first,
 * then no longer drained (in that order, so it is never drained-off and UP at once); its checks
 * take over from there. Idempotent.
 */
export async function backUnderChecks(s: RuntimeSessions, name: string): Promise<void> {
  await all(s, `set server ${HAPROXY_WRITE_BACKEND}/${name} health down`);
  await all(s, `set server ${HAPROXY_WRITE_BACKEND}/${name} state ready`);
}

/**
 * After `leader` was routed: the old leader, drained by the hand-off, back under its checks at once
 * — unless its own /primary still answers 200 (two leaders: then it stays drained, and verify says
 * so). Without this the drain lasted until verify, after the old leader streams again (up to 2 min),
 * and for good when verify failed before that.
 */
export async function releaseOldLeader(
  deps: SwitchoverDeps,
  inv: Inventory,
  s: RuntimeSessions,
  old: string | undefined,
): Promise<void> {
  if (!old || (await primary200(deps, inv, old))) return;
  await backUnderChecks(s, old);
}

/** Routes writes to `leader` on every HAProxy (the others down first); idempotent. */
export async function route(
  deps: SwitchoverDeps,
  inv: Inventory,
  s: RuntimeSessions,
  leader: string,
  old?: string,
): Promise<string[]> {
  for (const n of memberNames(inv)) {
    if (n !== leader && (n === old || !(await primary200(deps, inv, n))))
      await all(s, `set server ${HAPROXY_WRITE_BACKEND}/${n} health down`);
  }
  await admitLeader(s, leader);
  return s.sessions.map((x) => x.node);
}

/**
 * Nobody left drained: after a hand-off that did not complete — whatever ended it: Patroni's
 * refusal, the leader's CT gone mid-hand-off, a worker killed until the attempts ran out, a runtime
 * session that died under the release — every HAProxy's write and read backends are put back under
 * their checks over fresh sessions, and read back. A member that leads now (its own /primary 200)
 * goes back to `ready` without being forced DOWN (its clients stay); every other one is forced DOWN
 * first in the write backend. Returns what was settled, per node; throws naming what stays forced.
 */
export async function settleRouting(
  deps: SwitchoverDeps,
  inv: Inventory,
): Promise<{ settled: string[]; down: string[] }> {
  const s = await sessionsFor(deps, inv);
  try {
    const settled: string[] = [];
    for (const x of s.sessions) {
      const done = await settleNode(x.node, (cmd) => x.command(cmd, 5000), [
        { backend: HAPROXY_WRITE_BACKEND, leads: (m) => primary200(deps, inv, m) },
        { backend: HAPROXY_READ_BACKEND, leads: async () => false },
      ]);
      settled.push(...done.map((d) => `${x.node}: ${d}`));
    }
    return { settled, down: s.down ?? [] };
  } finally {
    s.close();
  }
}
