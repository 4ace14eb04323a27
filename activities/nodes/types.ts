/**
 * The shapes the node steps share: the CT shell they drive, their dependencies, what they report.
 */
import type { ProxmoxHost } from '../proxmox';
import type { Inventory, Role } from '../../runbooks/schema';
import { Failures } from '../../runbooks/failures';

/** The part of ProxmoxHost the node steps use (the lab's sshd + pct for real). */
export type CtShell = Pick<ProxmoxHost, 'exec' | 'push' | 'status'> &
  Partial<Pick<ProxmoxHost, 'setMountPoint' | 'reboot'>>;

export interface NodeDeps {
  shellFor(proxmox: Inventory['proxmox']): Promise<CtShell>;
  /**
   * Fault injection for tests: called after a step has written its files and before it applies
   * them to the service (reload/restart). Throwing here is a worker dying at the worst moment.
   */
  afterFiles?(step: { node: string; service: string }): void | Promise<void>;
}

/** One CT a step works on: its shell and vmid. */
export interface Ct {
  sh: CtShell;
  vmid: number;
}

/** What a provisioning activity did on one node: empty lists mean "already as wanted". */
export interface NodeChange {
  node: string;
  vmid: number;
  installed: string[];
  files: string[];
  services: string[];
}

export class NodeCommandError extends Error {
  override readonly name = Failures.NodeCommandError;
  constructor(vmid: number, argv: string[], code: number, stderr: string) {
    const tail = stderr.trim().split('\n').slice(-8).join('\n');
    super(`CT ${vmid}: \`${argv.slice(0, 6).join(' ')}\` exited with ${code}${tail ? `:\n${tail}` : ''}`);
  }
}

/** The file that tells which cluster a node belongs to (pre-flight refuses a node of another cluster). */
export const CLUSTER_MARKER = '/etc/pgha/cluster';

/** The systemd unit each role runs. */
export const SERVICE: Record<Role, string> = { etcd: 'etcd', postgres: 'patroni', haproxy: 'haproxy' };
