/** The shapes the upgrade activities take and return (workflows import them as types). */
import type { HaproxyActivities, HaproxyRuntimeRunner } from '../haproxy';
import type { MaintenanceDeps } from '../maintenance';
import type { CtShell } from '../nodes/types';
import type { Inventory } from '../../runbooks/schema';

export interface UpgradeDeps extends MaintenanceDeps {
  /** The Proxmox transport to the CTs (pct exec), for the install steps and the manifest. */
  shellFor(proxmox: Inventory['proxmox']): Promise<CtShell>;
  /** The HAProxy runtime API of a cluster's HAProxy nodes, for the read-port drain. */
  haproxyFor(inv: Inventory): Promise<HaproxyActivities>;
  /** One runtime API command on one HAProxy node (`pct exec … socat`), its answer. */
  haproxyRunner(inv: Inventory): Promise<HaproxyRuntimeRunner>;
}

/** One member as an upgrade step sees it. */
export interface UpgradeMember {
  name: string;
  role: 'leader' | 'replica';
  /** Patroni's state: running, streaming, stopped, ... */
  state: string;
  /** server_version_num it runs (GET /patroni server_version), null when unknown. */
  serverVersion: number | null;
  /** The same as text: 18.4. */
  running: string | null;
  postmasterStartTime: string | null;
  timeline: number | null;
  /** Already runs the target. */
  upgraded: boolean;
}

/** What the pre-check (or a later look) saw, and the plan. */
export interface UpgradeView {
  leader: string;
  timeline: number | null;
  /** The target as the install source names the build: 18.6.0. */
  build: string;
  /** server_version_num of the target: 180006. */
  toNum: number;
  members: UpgradeMember[];
  checkedAt: string;
}

export interface UpgradePrecheckResult extends UpgradeView {
  /** Every member runs the target already: nothing to do. */
  alreadyAtTarget: boolean;
  /** The oldest transaction on the leader when checked (ms), 0 when none. */
  oldestXactMs: number;
  etcd: { healthy: number; total: number };
}

/** What switching a member's build link did. */
export interface LinkResult {
  member: string;
  link: string;
  /** The link's target before (a versioned build dir), or the real directory it converged. */
  before: string;
  after: string;
  changed: boolean;
  /** A deploy's real directory moved aside into the versioned layout. */
  converged?: string;
}

export interface MemberUpgradeResult {
  member: string;
  from: string | null;
  to: string | null;
  action: 'upgraded' | 'already-upgraded' | 'rolled-back';
  postmasterBefore: string | null;
  postmasterAfter: string | null;
  lagBytes: number | null;
  tookMs: number;
}

export interface DrainResult {
  member: string;
  /** Read sessions still open on the member when the bound ran out (the restart ends them). */
  sessionsLeft: number;
  waitedMs: number;
  haproxies: string[];
}
