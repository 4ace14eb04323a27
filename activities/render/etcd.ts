/**
 * etcd: /etc/etcd/etcd.conf in the seed's format (ETCD_* variables, read by the unit's
 * EnvironmentFile=) and the systemd unit. The same variables serve etcd 3.4 (Debian bookworm) and
 * 3.5 (the seed's tarball). Patroni's etcd3 DCS talks to etcd's v3 HTTP/JSON gateway (/v3/...),
 * which both serve by default, so neither the v2 API nor anything else needs enabling.
 *
 * Seed defect fixed: the seed's etcd.conf puts a comment after each value
 * (`ETCD_NAME=etcd1   # ...`); systemd's EnvironmentFile= has no trailing comments, so the value
 * would be `etcd1   # ...`. Comments go on their own lines here.
 */
import type { Inventory, Node } from '../../runbooks/schema';
import { header, type RenderedFile } from './files';

export const ETCD_CONF_PATH = '/etc/etcd/etcd.conf';
export const ETCD_UNIT_PATH = '/etc/systemd/system/etcd.service';

function member(inv: Inventory, node: Node): Node {
  const m = inv.nodes.etcd.find((n) => n.hostname === node.hostname && n.vmid === node.vmid);
  if (!m)
    throw new Error(`${node.hostname} (CT ${node.vmid}) is not an etcd member of cluster ${inv.cluster}`);
  return m;
}

/** The ETCD_INITIAL_CLUSTER value: etcd1=http://ip:2380,... */
export function etcdInitialCluster(inv: Inventory): string {
  return inv.nodes.etcd.map((n) => `${n.hostname}=http://${n.ip}:${inv.ports.etcdPeer}`).join(',');
}

/**
 * How a member starts for the first time: `new` bootstraps the cluster with every member of
 * ETCD_INITIAL_CLUSTER (deployCluster); `existing` joins a running cluster that already lists it
 * (`pgha etcd replace`: `etcdctl member add` first, an empty data dir).
 */
export type EtcdInitialClusterState = 'new' | 'existing';

export interface EtcdConfOptions {
  initialClusterState?: EtcdInitialClusterState;
}

export function renderEtcdConf(inv: Inventory, node: Node, opts: EtcdConfOptions = {}): RenderedFile {
  const m = member(inv, node);
  const state = opts.initialClusterState ?? 'new';
  if (state !== 'new' && state !== 'existing')
    throw new Error(`initialClusterState ${JSON.stringify(state)}: expected new or existing`);
  const { etcdClient, etcdPeer } = inv.ports;
  const lines = [
    header(inv.cluster, `etcd member ${m.hostname} (CT ${m.vmid}), read by etcd.service as EnvironmentFile=`),
    '# Unique member name',
    `ETCD_NAME=${m.hostname}`,
    '# Data directory',
    `ETCD_DATA_DIR=${inv.etcd.dataDir}`,
    '# Client URLs: the member address (Patroni, etcdctl) and loopback',
    `ETCD_LISTEN_CLIENT_URLS=http://${m.ip}:${etcdClient},http://127.0.0.1:${etcdClient}`,
    `ETCD_ADVERTISE_CLIENT_URLS=http://${m.ip}:${etcdClient}`,
    '# Peer URLs (between etcd members)',
    `ETCD_LISTEN_PEER_URLS=http://${m.ip}:${etcdPeer}`,
    `ETCD_INITIAL_ADVERTISE_PEER_URLS=http://${m.ip}:${etcdPeer}`,
    '# Bootstrap: ignored once the member has data',
    ...(state === 'existing'
      ? ['# Joins the running cluster as a member added with `etcdctl member add` (pgha etcd replace)']
      : []),
    `ETCD_INITIAL_CLUSTER=${etcdInitialCluster(inv)}`,
    `ETCD_INITIAL_CLUSTER_TOKEN=${inv.etcd.clusterToken}`,
    `ETCD_INITIAL_CLUSTER_STATE=${state}`,
    '# Structured logs to stderr (the journal); the default in 3.5, and 3.4 warns without it',
    'ETCD_LOGGER=zap',
  ];
  return {
    path: ETCD_CONF_PATH,
    content: `${lines.join('\n')}\n`,
    mode: 0o644,
    owner: 'root',
    group: 'root',
  };
}

export function renderEtcdUnit(inv: Inventory): RenderedFile {
  const content = `${header(inv.cluster, 'etcd systemd unit')}[Unit]
Description=etcd key-value store (Patroni DCS of cluster ${inv.cluster})
Documentation=https://etcd.io/docs/
After=network-online.target
Wants=network-online.target

[Service]
# Type=notify: a member is "started" only once the cluster has a quorum, so start the members of a
# new cluster together (systemctl start --no-block) and then poll etcdctl endpoint health.
Type=notify
User=${inv.etcd.user}
Group=${inv.etcd.user}
EnvironmentFile=${ETCD_CONF_PATH}
ExecStart=${inv.etcd.binDir}/etcd
Restart=on-failure
RestartSec=5s
TimeoutStartSec=180s
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`;
  return { path: ETCD_UNIT_PATH, content, mode: 0o644, owner: 'root', group: 'root' };
}
