/** What every node step starts with: the node, its CT, the files rendered for it, the cluster marker. */
import { posix } from 'node:path';
import type { Inventory, Node, Role } from '../../runbooks/schema';
import { resolveClusterSecrets } from '../../runbooks/inventory';
import { findNode } from '../../runbooks/topology';
import { renderNodeFiles } from '../render';
import type { EtcdConfOptions, RenderedFile } from '../render';
import { push, run } from './shell';
import { CLUSTER_MARKER } from './types';
import type { Ct, NodeDeps } from './types';

export async function nodeCt(
  deps: NodeDeps,
  inv: Inventory,
  role: Role,
  hostname: string,
): Promise<{ node: Node; ct: Ct }> {
  const node = findNode(inv, role, hostname);
  return { node, ct: { sh: await deps.shellFor(inv.proxmox), vmid: node.vmid } };
}

export async function markCluster(ct: Ct, inv: Inventory): Promise<void> {
  await run(ct, ['mkdir', '-p', posix.dirname(CLUSTER_MARKER)]);
  await push(ct, CLUSTER_MARKER, `${inv.cluster}\n`, { mode: 0o644 });
}

export async function renderFor(
  inv: Inventory,
  role: Role,
  node: Node,
  opts: { etcd?: EtcdConfOptions } = {},
): Promise<RenderedFile[]> {
  return renderNodeFiles(inv, role, node, await resolveClusterSecrets(inv), opts);
}
