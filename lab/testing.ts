/**
 * For test/lab: is the lab up, and the Proxmox section tests connect with. Tests skip with the
 * returned reason only when the lab is not up (CI brings it up first, so there they run).
 */
import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import type { ProxmoxInventorySection } from '../activities/proxmox';
import { DEFAULT_INVENTORY } from './inventory';
import { bridgeExists } from './network';
import { BRIDGE } from './paths';
import { CLIENT_KEY, FINGERPRINT_FILE, sshdPid } from './sshd';

/** The proxmox section of runbooks/clusters/lab.yaml, as the activities get it. */
export function labProxmoxSection(file = DEFAULT_INVENTORY): ProxmoxInventorySection {
  const doc = parse(readFileSync(file, 'utf8')) as { proxmox: ProxmoxInventorySection };
  return doc.proxmox;
}

/** undefined when the lab is up (sshd running, bridge present); otherwise why lab tests must skip. */
export function labNotUpReason(): string | undefined {
  const why = 'the lab is not up (run: npx pgha lab up)';
  if (!existsSync(FINGERPRINT_FILE) || !existsSync(CLIENT_KEY)) return `${why}: no ${FINGERPRINT_FILE}`;
  if (sshdPid() === undefined) return `${why}: its sshd is not running`;
  if (!bridgeExists()) return `${why}: no bridge ${BRIDGE}`;
  return undefined;
}
