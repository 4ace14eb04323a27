/** The shapes the major-upgrade activities take and return (the workflow imports them as types). */
import type { UpgradeDeps } from '../upgrade/types';

/** The rolling upgrade's deps: Patroni, SQL, etcd, the Proxmox transport (pct exec). */
export type MajorDeps = UpgradeDeps;

/** What the pre-check saw: the roles, the versions, the build to go to. */
export interface MajorPlan {
  leader: string;
  /** In inventory order. */
  replicas: string[];
  /** server_version_num every member runs (170011). */
  fromNum: number;
  /** The target build as the install source names it (18.6.0), and its server_version_num. */
  build: string;
  toNum: number;
  /** Every member already runs the target major: nothing to do. */
  alreadyDone: boolean;
  /** Each replica's replay lag behind the leader, bytes. */
  lagBytes: Record<string, number | null>;
  checkedAt: string;
}

/** What the leader-side check found (initdb of the new directory, pg_upgrade --check). */
export interface MajorCheckResult {
  leader: string;
  /** The old cluster's data checksums, matched by the new one's initdb. */
  checksums: boolean;
  /** Whether this call ran initdb (false: the new directory was there already, from this run). */
  initdb: boolean;
  /** Extensions installed in the old cluster's databases, each available in the new build. */
  extensions: string[];
  /** The last lines of pg_upgrade --check. */
  check: string;
}

/** Where every member stopped. */
export interface MajorStopResult {
  /** "Latest checkpoint location" per member after the stop. */
  checkpoints: Record<string, string>;
  /** Members this call stopped (the others were already stopped). */
  stopped: string[];
  /** ms from the call's start: replicasPatroniStopped, leaderCheckpoint, leaderStopped, allStopped. */
  timings?: Record<string, number>;
}

export interface MajorPgUpgradeResult {
  /**
   * ran: started and finished in this call; joined: an earlier attempt's pg_upgrade was found
   * running and waited for; already-done: a finished one was found. Never started twice.
   */
  action: 'ran' | 'joined' | 'already-done';
  tookMs: number;
}

export interface MajorMemberResult {
  member: string;
  role: 'leader' | 'replica';
  state: string;
  serverVersion: number | null;
  lagBytes?: number | null;
}
