/** StatusInput from an inventory, every address from runbooks/topology.ts. */
import type { Inventory } from '../../runbooks/schema';
import { etcdEndpoint, restApi, sqlConn } from '../../runbooks/topology';
import { HAPROXY_ADMIN_SOCKET, HAPROXY_READ_BACKEND, HAPROXY_WRITE_BACKEND } from '../render/haproxy';
import type { StatusInput } from './types';

/** Member names are hostnames, as Patroni's `name` in pgha's patroni.yml. */
export function statusInputFromInventory(
  inv: Inventory,
  opts: { sql?: boolean; adminSocket?: string; writeBackend?: string; readBackend?: string } = {},
): StatusInput {
  // pgha's rendered haproxy.cfg (activities/render/haproxy.ts) unless told otherwise.
  const adminSocket = opts.adminSocket ?? HAPROXY_ADMIN_SOCKET;
  const input: StatusInput = {
    cluster: inv.cluster,
    etcd: { members: inv.nodes.etcd.map((n) => ({ name: n.hostname, url: etcdEndpoint(inv, n.hostname) })) },
    patroni: {
      namespace: inv.patroni.namespace,
      scope: inv.patroni.scope,
      members: inv.nodes.postgres.map((n) => {
        const conn = sqlConn(inv, n.hostname);
        return { name: n.hostname, url: restApi(inv, n.hostname).url, host: conn.host, port: conn.port! };
      }),
      maximumLagBytes: inv.patroni.maximumLagOnFailover,
    },
    haproxy: {
      nodes: inv.nodes.haproxy.map((n) => ({ name: n.hostname, vmid: n.vmid, socket: adminSocket })),
      writeBackend: opts.writeBackend ?? HAPROXY_WRITE_BACKEND,
      readBackend: opts.readBackend ?? HAPROXY_READ_BACKEND,
    },
  };
  if (opts.sql !== false)
    input.postgres = { user: inv.postgresql.superuser, passwordRef: inv.secrets.superuserPassword };
  return input;
}
