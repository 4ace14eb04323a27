/**
 * etcd on one node: packages, /etc/etcd/etcd.conf, the unit; started without waiting for quorum.
 * `join`: the member joins a running cluster that already lists it (`etcdctl member add`, by pgha
 * etcd replace): rendered with ETCD_INITIAL_CLUSTER_STATE=existing; its data dir must be empty
 * (the replace pre-check saw to that).
 */
import type { Inventory } from '../../runbooks/schema';
import { markCluster, nodeCt, renderFor } from './context';
import { ensureDebs, runOnlineRecipe } from './packages';
import { ensureService } from './service';
import { ensureDir, ensureFiles } from './shell';
import { SERVICE } from './types';
import type { NodeChange, NodeDeps } from './types';

export async function installEtcd(
  deps: NodeDeps,
  args: { inv: Inventory; hostname: string; join?: boolean },
): Promise<NodeChange> {
  const { inv, hostname } = args;
  const { node, ct } = await nodeCt(deps, inv, 'etcd', hostname);
  await markCluster(ct, inv);
  const installed =
    inv.install.etcd.method === 'offline'
      ? await ensureDebs(ct, inv.install.etcd.dir, ['etcd-server', 'etcd-client'])
      : await runOnlineRecipe(ct, inv, 'etcd');
  await ensureDir(ct, inv.etcd.dataDir, inv.etcd.user, 0o700);
  const rendered = await renderFor(inv, 'etcd', node, {
    etcd: { initialClusterState: args.join ? 'existing' : 'new' },
  });
  const files = await ensureFiles(ct, rendered);
  await deps.afterFiles?.({ node: hostname, service: SERVICE.etcd });
  const services = await ensureService(ct, {
    unit: SERVICE.etcd,
    files: rendered.map((f) => f.path),
    filesChanged: files.length > 0,
    running: true,
    onChange: 'restart',
    noBlock: true,
  });
  return { node: hostname, vmid: ct.vmid, installed, files, services };
}
