/**
 * Renderers: pure functions inventory (+ resolved secrets) → files. No I/O here; the deploy step
 * pushes the files (activities/nodes.ts) and the golden tests compare them (test/golden/).
 */
import type { ClusterSecrets, Inventory, Node, Role } from '../../runbooks/schema';
import { renderEtcdConf, renderEtcdUnit } from './etcd';
import type { EtcdConfOptions } from './etcd';
import type { RenderedFile } from './files';
import { renderHaproxyCfg, renderHaproxyStateDown, renderHaproxyUnit } from './haproxy';
import { renderHaproxyHoldLua } from './haproxy-hold';
import { renderPatroniUnit, renderPatroniYml, renderPgpass } from './patroni';

export * from './etcd';
export * from './files';
export * from './haproxy';
export * from './haproxy-hold';
export * from './install';
export * from './patroni';

/** Every file a node of `role` needs, in the order to write them (`etcd`: how it starts first). */
export function renderNodeFiles(
  inv: Inventory,
  role: Role,
  node: Node,
  secrets: ClusterSecrets,
  opts: { etcd?: EtcdConfOptions } = {},
): RenderedFile[] {
  switch (role) {
    case 'etcd':
      return [renderEtcdConf(inv, node, opts.etcd), renderEtcdUnit(inv)];
    case 'postgres':
      return [renderPatroniYml(inv, node, secrets), renderPgpass(inv, secrets), renderPatroniUnit(inv)];
    case 'haproxy':
      return [
        renderHaproxyHoldLua(inv),
        renderHaproxyCfg(inv, secrets),
        renderHaproxyStateDown(inv),
        renderHaproxyUnit(inv),
      ];
  }
}

export interface RenderedNode {
  role: Role;
  node: Node;
  files: RenderedFile[];
}

/** The files of every node of the cluster: etcd, then PostgreSQL, then HAProxy (the seed's order). */
export function renderCluster(inv: Inventory, secrets: ClusterSecrets): RenderedNode[] {
  const order: Role[] = ['etcd', 'postgres', 'haproxy'];
  return order.flatMap((role) =>
    inv.nodes[role].map((node) => ({ role, node, files: renderNodeFiles(inv, role, node, secrets) })),
  );
}
export * from './barman';
export * from './drill';
