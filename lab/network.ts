/**
 * The lab bridge pglab0 (host side 10.213.50.1/24) and the faults on it. No NAT, no gateway for
 * the CTs, no forwarding: the CTs reach each other and the host's 10.213.50.1, nothing else.
 */
import { existsSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { LAB_HOST_IP } from './inventory';
import { BRIDGE } from './paths';
import { run } from './sh';

/** The host end of a CT's veth pair (lxc.net.0.veth.pair), so faults can find it. */
export function vethName(vmid: number): string {
  return `vethpg${vmid}`;
}

export function bridgeExists(): boolean {
  return existsSync(`/sys/class/net/${BRIDGE}`);
}

export function ensureBridge(): void {
  if (!bridgeExists()) run('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
  const addrs = run('ip', ['-4', '-o', 'addr', 'show', 'dev', BRIDGE]).stdout;
  if (!addrs.includes(` ${LAB_HOST_IP}/24 `)) run('ip', ['addr', 'add', `${LAB_HOST_IP}/24`, 'dev', BRIDGE]);
  run('ip', ['link', 'set', BRIDGE, 'up']);
}

export function removeBridge(): void {
  if (bridgeExists()) run('ip', ['link', 'del', BRIDGE]);
}

/** 'attached' | 'partitioned' (veth off the bridge) | 'absent' (CT not running). */
export function linkState(vmid: number): 'attached' | 'partitioned' | 'absent' {
  const dev = `/sys/class/net/${vethName(vmid)}`;
  if (!existsSync(dev)) return 'absent';
  try {
    return basename(readlinkSync(`${dev}/master`)) === BRIDGE ? 'attached' : 'partitioned';
  } catch {
    return 'partitioned';
  }
}

/** Cut a CT off the bridge: its eth0 stays up but no frame reaches the other CTs or the host. */
export function partition(vmid: number): void {
  if (linkState(vmid) === 'absent') throw new Error(`CT ${vmid} has no network link (is it running?)`);
  run('ip', ['link', 'set', vethName(vmid), 'nomaster']);
}

export function heal(vmid: number): void {
  if (linkState(vmid) === 'absent') throw new Error(`CT ${vmid} has no network link (is it running?)`);
  run('ip', ['link', 'set', vethName(vmid), 'master', BRIDGE]);
  run('ip', ['link', 'set', vethName(vmid), 'up']);
}
