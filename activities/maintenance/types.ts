/** The shapes maintenance activities take and return (workflows import them as types). */
import type { ConfigValue } from '../../runbooks/patroni-config';
import type { EtcdActivities } from '../etcd';
import type { PatroniActivities } from '../patroni';
import type { PostgresActivities } from '../postgres';

export interface MaintenanceDeps {
  patroni: PatroniActivities;
  postgres: PostgresActivities;
  etcd: EtcdActivities;
}

/** One member as the pre-check saw it. */
export interface MemberSnapshot {
  name: string;
  role: 'leader' | 'replica';
  /** Patroni's state: running, streaming, starting, stopped, ... */
  state: string;
  timeline: number | null;
  /** GET /patroni postmaster_start_time: changes exactly when PostgreSQL restarts. */
  postmasterStartTime: string | null;
  pendingRestart: boolean;
  /** Parameters behind pendingRestart (Patroni ≥ 3.0.4's pending_restart_reason). */
  pendingRestartReason?: string[];
  /** Replicas: replay lag behind the leader in bytes (pg_stat_replication), null if not streaming. */
  lagBytes: number | null;
  streaming: boolean | null;
}

export interface ClusterSnapshot {
  leader: string;
  timeline: number | null;
  members: MemberSnapshot[];
  etcd: { healthy: number; total: number };
  patroniVersion?: string;
  checkedAt: string;
}

export interface RestartResult {
  member: string;
  role: 'leader' | 'replica';
  /** restarted: we POSTed /restart; already-restarted: its postmaster had restarted since the pre-check; skipped: nothing pending. */
  action: 'restarted' | 'already-restarted' | 'skipped';
  reason?: string;
  postmasterBefore: string | null;
  postmasterAfter: string | null;
  lagBytes?: number | null;
  tookMs: number;
}

export interface ConfigApplyResult {
  changed: { key: string; from: unknown; to: ConfigValue; needsRestart: boolean }[];
  unchanged: { key: string; value: unknown }[];
  /**
   * replicas-first, except when a parameter a standby must keep at least as high as its primary
   * (max_connections, max_wal_senders, ...) goes DOWN: then the leader first, or the replicas
   * would restart with the old value (Patroni keeps them at the primary's, from pg_controldata).
   */
  restartOrder: 'replicas-first' | 'leader-first';
  orderReason?: string;
}

export interface ConfigMemberState {
  member: string;
  pendingRestart: boolean;
  pendingRestartReason?: string[];
  /** Parameter → pg_settings.setting on this member now. */
  settings: Record<string, string>;
}
