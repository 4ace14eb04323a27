/**
 * The Proxmox host transport (see host.ts): the only module in pgha that opens an SSH session.
 * config.ts resolves the inventory's section, ssh.ts speaks ssh2, scripts.ts holds what runs in a
 * CT, and this file gives the activities one ProxmoxHost per host.
 */
import { ProxmoxHost } from './host';
import type { ProxmoxConfig, ProxmoxInventorySection } from './config';

export * from './config';
export * from './errors';
export * from './host';
export * from './types';
export { EXEC_MARK } from './scripts';

/**
 * A factory the activities layer holds: one ProxmoxHost (one SSH connection) per host/port/user,
 * built on first use from the inventory's proxmox section.
 */
export function createProxmoxFactory(
  extra?: Partial<Omit<ProxmoxConfig, 'host' | 'privateKey' | 'hostKeyFingerprint'>>,
): { get(section: ProxmoxInventorySection): Promise<ProxmoxHost>; closeAll(): void } {
  const hosts = new Map<string, Promise<ProxmoxHost>>();
  return {
    get(section) {
      const key = `${section.user ?? 'root'}@${section.host}:${section.port ?? 22}|${section.hostKeyFingerprint}`;
      let h = hosts.get(key);
      if (!h) {
        h = ProxmoxHost.fromInventory(section, extra);
        hosts.set(key, h);
        h.catch(() => hosts.delete(key));
      }
      return h;
    },
    closeAll() {
      for (const h of hosts.values()) void h.then((x) => x.close()).catch(() => undefined);
      hosts.clear();
    },
  };
}
