/**
 * etcdSnapshot: `etcdctl snapshot save` on one member, checked with `etcdctl snapshot status`,
 * copied to a directory on the Proxmox host (`pct pull`; the store when the cluster has no backup
 * CT), its SHA-256 compared on both sides before it gets its final name, and the oldest snapshots
 * of this cluster beyond `keep` removed.
 *
 * Idempotent: the name comes from the workflow (its start time), a file of that name in the store
 * is a verified copy (only a matching hash is renamed into place), so a retry finds it and stops.
 */
import type { Inventory } from '../../runbooks/schema';
import { pathProblem, systemDirProblem } from '../../runbooks/grammar';
import { pct, quote } from '../command';
import { cancellationSignal, keepBeating } from '../poll';
import { etcdNode, fail, refuse } from './common';
import type { EtcdOpsDeps } from './types';

/** Where snapshots go on the Proxmox host when no other directory is given. */
export const ETCD_SNAPSHOT_DIR = '/var/lib/pgha/etcd-snapshots';

export interface EtcdSnapshotArgs {
  inv: Inventory;
  member: string;
  /** The file name, `etcd-<cluster>-<UTC stamp>.db` (the workflow derives it from its start time). */
  name: string;
  /** The host directory (default ETCD_SNAPSHOT_DIR/<cluster>). */
  dir?: string;
  /** How many of this cluster's snapshots to keep in the directory (default 7). */
  keep?: number;
}

export interface EtcdSnapshotResult {
  member: string;
  /** Host path of the verified snapshot. */
  path: string;
  sha256: string;
  /** From `etcdctl snapshot status`. */
  revision?: number;
  totalKeys?: number;
  sizeBytes?: number;
  /** false when a retry found the verified file in place. */
  created: boolean;
  /** Snapshots removed by the retention, oldest first. */
  removed: string[];
  kept: string[];
}

export function snapshotDir(inv: Inventory, dir?: string): string {
  const d = dir ?? `${ETCD_SNAPSHOT_DIR}/${inv.cluster}`;
  const problem = pathProblem(d) ?? systemDirProblem(d);
  if (problem) refuse(`snapshot directory ${JSON.stringify(d)}: ${problem}`);
  return d;
}

export async function etcdSnapshotSave(
  deps: EtcdOpsDeps,
  args: EtcdSnapshotArgs,
): Promise<EtcdSnapshotResult> {
  const { inv, member } = args;
  const node = etcdNode(inv, member);
  const prefix = `etcd-${inv.cluster}-`;
  if (!args.name.startsWith(prefix) || !/^[A-Za-z0-9._-]+\.db$/.test(args.name)) {
    refuse(`snapshot name ${JSON.stringify(args.name)}: expected ${prefix}<UTC stamp>.db`);
  }
  const keep = args.keep ?? 7;
  if (!Number.isInteger(keep) || keep < 1) refuse(`keep ${String(keep)}: give a whole number ≥ 1`);
  const dir = snapshotDir(inv, args.dir);
  const final = `${dir}/${args.name}`;
  const sh = await deps.hostFor(inv.proxmox);
  const signal = cancellationSignal();
  const host = async (argv: string[], timeoutMs = 60_000) => {
    const r = await keepBeating(sh.run(quote(argv), { timeoutMs, signal }), {
      phase: argv.slice(0, 2).join(' '),
    });
    return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
  };
  const inCt = async (argv: string[], timeoutMs = 120_000) => {
    const r = await keepBeating(sh.exec(node.vmid, argv, { timeoutMs, signal }), {
      member,
      phase: argv.slice(0, 3).join(' '),
    });
    if (r.code !== 0)
      fail(
        `CT ${node.vmid} (${member}): \`${argv.join(' ')}\` exited ${r.code}: ${r.stderr.trim().slice(-400)}`,
      );
    return r.stdout;
  };
  const sha = async (path: string) => {
    const r = await host(['sha256sum', '--', path]);
    return r.code === 0 ? (r.stdout.split(' ')[0] ?? '') : null;
  };

  let created = false;
  let status: { revision?: number; totalKey?: number; totalSize?: number } = {};
  let hash = await sha(final);
  if (hash === null) {
    const etcdctl = `${inv.etcd.binDir}/etcdctl`;
    const tmp = `/var/tmp/pgha-${args.name}`;
    const endpoint = `--endpoints=http://127.0.0.1:${inv.ports.etcdClient}`;
    await inCt(['rm', '-f', '--', tmp, `${tmp}.part`]);
    await inCt(['env', 'ETCDCTL_API=3', etcdctl, endpoint, '--command-timeout=60s', 'snapshot', 'save', tmp]);
    status = JSON.parse(
      await inCt(['env', 'ETCDCTL_API=3', etcdctl, 'snapshot', 'status', tmp, '--write-out=json']),
    ) as typeof status;
    if (!status.totalKey || !status.revision)
      fail(`snapshot status of ${tmp} in CT ${node.vmid} shows no keys: ${JSON.stringify(status)}`);
    const ctHash = (await inCt(['sha256sum', '--', tmp])).split(' ')[0]!;
    const mk = await host(['install', '-d', '-m', '700', '--', dir]);
    if (mk.code !== 0) fail(`cannot create ${dir} on the Proxmox host: ${mk.stderr.trim()}`);
    const part = `${final}.part`;
    const r = await keepBeating(sh.run(pct('pull', node.vmid, [tmp, part]), { timeoutMs: 600_000, signal }), {
      phase: 'pct pull',
    });
    if (r.code !== 0) fail(`pct pull ${node.vmid} ${tmp} ${part} failed: ${r.stderr.trim().slice(-400)}`);
    const hostHash = await sha(part);
    if (hostHash !== ctHash)
      fail(
        `the copy on the host (${hostHash ?? 'unreadable'}) differs from the snapshot in CT ${node.vmid} (${ctHash})`,
      );
    const mv = await host(['mv', '-f', '--', part, final]);
    if (mv.code !== 0) fail(`cannot rename ${part} to ${final}: ${mv.stderr.trim()}`);
    await inCt(['rm', '-f', '--', tmp]);
    hash = hostHash;
    created = true;
  }
  // Retention: this cluster's snapshots by name (the UTC stamp sorts), the newest `keep` stay.
  const ls = await host([
    'find',
    dir,
    '-maxdepth',
    '1',
    '-type',
    'f',
    '-name',
    `${prefix}*.db`,
    '-printf',
    '%f\\n',
  ]);
  const all = ls.stdout
    .split('\n')
    .filter((f) => f.startsWith(prefix) && f.endsWith('.db'))
    .sort();
  const removed = all.slice(0, Math.max(0, all.length - keep));
  for (const f of removed) await host(['rm', '-f', '--', `${dir}/${f}`]);
  return {
    member,
    path: final,
    sha256: hash,
    revision: status.revision,
    totalKeys: status.totalKey,
    sizeBytes: status.totalSize,
    created,
    removed,
    kept: all.slice(removed.length),
  };
}
