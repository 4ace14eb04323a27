/** The shapes the Patroni upgrade activities take and return (the workflow imports them as types). */
import type { Inventory } from '../../runbooks/schema';
import type { EtcdActivities } from '../etcd';
import type { CtShell } from '../nodes/types';
import type { PatroniActivities } from '../patroni';
import type { PostgresActivities } from '../postgres';

export interface PatroniUpgradeDeps {
  patroni: PatroniActivities;
  postgres: PostgresActivities;
  etcd: EtcdActivities;
  shellFor(proxmox: Inventory['proxmox']): Promise<CtShell>;
}

/** One member as the upgrade pre-check saw it. */
export interface UpgradeMember {
  name: string;
  role: 'leader' | 'replica';
  /** The Patroni version its GET /patroni reports. */
  version: string;
  /** GET /patroni postmaster_start_time: must be the same after the upgrade (PostgreSQL never restarts). */
  postmasterStartTime: string | null;
  /** systemd's KillMode of its patroni unit: `process` lets Patroni restart without PostgreSQL. */
  killMode: string;
  /** What the run does with it: switch to the target, or nothing (already there). */
  action: 'upgrade' | 'already';
}

export interface UpgradePlan {
  cluster: string;
  to: string;
  leader: string;
  timeline: number | null;
  /** In the order the run handles them: replicas first, the leader last. */
  members: UpgradeMember[];
  /** Nothing to do: every member already runs the target. */
  noop: boolean;
  /** The steps per node, as an operator reads them (the dry run prints this). */
  steps: string[];
  checkedAt: string;
}

export interface SwitchResult {
  member: string;
  from: string | null;
  to: string;
  /** switched: its Patroni was restarted on the new venv here; already: it reported `to` before we acted. */
  action: 'switched' | 'already';
  postmasterBefore: string | null;
  postmasterAfter: string | null;
  /** The postmaster start time changed: PostgreSQL restarted (must not happen; the test checks it). */
  postgresRestarted: boolean;
  /** Files and links changed on the node (venv installed, layout converged, unit, link). */
  changes: string[];
  tookMs: number;
}
