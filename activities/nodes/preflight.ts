/** Pre-flight on one node, before deployCluster changes anything. */
import type { Inventory, Role } from '../../runbooks/schema';
import { nodeCt } from './context';
import { probe, succeeds } from './shell';
import { CLUSTER_MARKER } from './types';
import type { NodeDeps } from './types';

/**
 * Its CT exists and runs, and it holds no data of another cluster (etcd's member dir or a
 * PostgreSQL data dir without our marker, or a marker naming another cluster). A node already
 * marked for this cluster is a resume, not a conflict.
 */
export async function preflightNode(deps: NodeDeps, args: { inv: Inventory; role: Role; hostname: string }) {
  const { inv, role, hostname } = args;
  const { ct } = await nodeCt(deps, inv, role, hostname);
  const vmid = ct.vmid;
  const state = await ct.sh.status(vmid);
  if (state !== 'running') {
    throw new Error(`CT ${vmid} (${hostname}) is ${state}; start it first: pct start ${vmid}`);
  }
  const marker = await probe(ct, ['cat', CLUSTER_MARKER]);
  const owner = marker.code === 0 ? marker.stdout.trim() : undefined;
  if (owner !== undefined && owner !== inv.cluster) {
    throw new Error(
      `CT ${vmid} (${hostname}) belongs to cluster "${owner}" (${CLUSTER_MARKER}), not "${inv.cluster}": ` +
        "check the inventory's vmid, or remove that cluster first",
    );
  }
  const dataPath =
    role === 'etcd'
      ? `${inv.etcd.dataDir}/member`
      : role === 'postgres'
        ? `${inv.postgresql.dataDir}/PG_VERSION`
        : undefined;
  const hasData = dataPath ? await succeeds(ct, ['test', '-e', dataPath]) : false;
  if (hasData && owner === undefined) {
    throw new Error(
      `CT ${vmid} (${hostname}) already holds data at ${dataPath} that pgha did not create: ` +
        'refusing to deploy over it. Move it away (or point the inventory at another CT) and run again',
    );
  }
  return { node: hostname, vmid, resuming: owner === inv.cluster, hasData };
}
