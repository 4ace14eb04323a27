/**
 * createActivities(deps): every activity the pgha worker registers. Each module is a factory over the
 * clients it needs (injected here, faked in tests); add one spread per module.
 * Workflows type their proxies with `proxyActivities<Activities>` and import this file only as a type.
 */
import { createSmokeActivities } from './smoke';
import { createEtcdActivities } from './etcd';
import { createPatroniActivities } from './patroni';
import { createPostgresActivities } from './postgres';
import { createHaproxyActivities, runnerFromCtExec } from './haproxy';
import { createStatusActivities } from './status';
import { createNodeActivities } from './nodes';
import { createGateActivities } from './gates';
import { createSwitchoverActivities } from './switchover';
import { createMaintenanceActivities } from './maintenance';
import { createProxmoxFactory } from './proxmox';
import { createEtcdOpsActivities } from './etcd-ops';
import { createEtcdAdmin } from './etcd';
import { createPatroniUpgradeActivities } from './upgrade-patroni';
import { createUpgradeActivities } from './upgrade';
import { createMajorUpgradeActivities } from './upgrade-major';
import { createBackupActivities } from './backup';
import { createRestoreActivities } from './restore';
import { createGuardianActivities } from './guardian';
import { aliveWhileRunning } from './poll';
import { createNotifyActivities } from './notify';
import type { Inventory } from '../runbooks/schema';

export interface ActivityDeps {
  /** The worker's state directory (default: temporal.config.ts stateDir). */
  stateDir: string;
  /** SSH connections to Proxmox hosts, one per host (default: real ssh2 connections, made on first use). */
  proxmox?: ReturnType<typeof createProxmoxFactory>;
}

export function createActivities(deps: ActivityDeps) {
  const proxmox = deps.proxmox ?? createProxmoxFactory();
  const etcd = createEtcdActivities();
  const patroni = createPatroniActivities();
  const postgres = createPostgresActivities();
  const haproxyFor = async (inv: Inventory) =>
    createHaproxyActivities({ runner: runnerFromCtExec(await proxmox.get(inv.proxmox)) });
  const statusFor = async (inv: Inventory) =>
    createStatusActivities({ etcd, patroni, postgres, haproxy: await haproxyFor(inv) });
  const upgradeDeps = {
    patroni,
    postgres,
    etcd,
    shellFor: (s: Inventory['proxmox']) => proxmox.get(s),
    haproxyFor,
    haproxyRunner: async (inv: Inventory) => runnerFromCtExec(await proxmox.get(inv.proxmox)),
  };
  return aliveWhileRunning({
    ...createSmokeActivities({ stateDir: deps.stateDir }),
    ...etcd,
    ...patroni,
    ...postgres,
    ...createNodeActivities({ shellFor: (section) => proxmox.get(section) }),
    ...createGateActivities({ patroni, postgres, statusFor }),
    ...createSwitchoverActivities({ patroni, postgres, etcd, haproxyFor, proxmoxFor: (s) => proxmox.get(s) }),
    ...createMaintenanceActivities({ patroni, postgres, etcd }),
    ...createEtcdOpsActivities({ etcd, admin: createEtcdAdmin(), patroni, hostFor: (s) => proxmox.get(s) }),
    ...createPatroniUpgradeActivities({ patroni, postgres, etcd, shellFor: (s) => proxmox.get(s) }),
    ...createUpgradeActivities(upgradeDeps),
    ...createMajorUpgradeActivities(upgradeDeps),
    ...createBackupActivities({ shellFor: (section) => proxmox.get(section), patroni }),
    ...createRestoreActivities({
      shellFor: (section) => proxmox.get(section),
      hostFor: (section) => proxmox.get(section),
      patroni,
    }),
    ...createGuardianActivities({ patroni, postgres, etcd, haproxyFor, proxmoxFor: (s) => proxmox.get(s) }),
    ...createNotifyActivities(),
  });
}

export type Activities = ReturnType<typeof createActivities>;
