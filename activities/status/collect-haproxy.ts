/** HAProxy's part of the status: each node's servers, through its runtime API. */
import { msg } from './common';
import type { ClusterStatus, HaproxyNodeStatus, StatusDeps, StatusInput } from './types';

export async function collectHaproxy(
  deps: StatusDeps,
  input: StatusInput,
): Promise<ClusterStatus['haproxy']> {
  if (!input.haproxy || input.haproxy.nodes.length === 0)
    return { asked: false, reason: 'no HAProxy nodes given' };
  if (!deps.haproxy)
    return { asked: false, reason: 'no runtime-API transport wired (pct exec): state unknown' };
  const h = deps.haproxy;
  const nodes = await Promise.all(
    input.haproxy.nodes.map(async (node): Promise<HaproxyNodeStatus> => {
      try {
        const rows = await h.haproxyShowStat({ node });
        return {
          name: node.name,
          vmid: node.vmid,
          socket: node.socket,
          reachable: true,
          servers: rows.map((r) => ({
            backend: r.backend,
            server: r.server,
            state: r.state,
            status: r.status,
            checkStatus: r.checkStatus,
          })),
        };
      } catch (err) {
        return { name: node.name, reachable: false, servers: [], error: msg(err) };
      }
    }),
  );
  return {
    asked: true,
    nodes,
    writeBackend: input.haproxy.writeBackend,
    readBackend: input.haproxy.readBackend,
  };
}
