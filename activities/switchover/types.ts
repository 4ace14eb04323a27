/**
 * The switchover activities' shapes: what they depend on, the plan the pre-check hands the
 * hand-off and the verification, and what each returns.
 */
import type { Inventory } from '../../runbooks/schema';
import type { PgConn } from '../../runbooks/topology';
import type { EtcdActivities } from '../etcd';
import type { HaproxyActivities, RuntimeSessions } from '../haproxy';
import type { PatroniActivities } from '../patroni';
import type { PostgresActivities, RecoveryProbe } from '../postgres';
import type { ProxmoxHost, ProxmoxInventorySection } from '../proxmox';

export type HandoffAction = 'switchover' | 'failover';

export interface SwitchoverDeps {
  patroni: PatroniActivities;
  postgres: PostgresActivities;
  etcd: EtcdActivities;
  /** The HAProxy runtime API (one-shot commands) of an inventory's HAProxy nodes. */
  haproxyFor(inv: Inventory): Promise<HaproxyActivities>;
  /**
   * Interactive runtime sessions for the critical path. Default: `prompt`-mode sessions over
   * proxmox openSession (`pct exec <vmid> -- socat ...`), one per HAProxy node.
   */
  openRuntimeSessions?: (inv: Inventory) => Promise<RuntimeSessions>;
  /** The Proxmox transport the default sessions use. Default: a connection of their own, closed with them. */
  proxmoxFor?: (section: ProxmoxInventorySection) => Promise<ProxmoxHost>;
  /** A kept SQL connection answering pg_is_in_recovery() (default: postgres.ts openRecoveryProbe). Tests fake it. */
  recoveryProbe?: (conn: PgConn) => RecoveryProbe;
  /** Bound of a switchover's hand-off (POST → candidate writable). Default 60 s. */
  handoffTimeoutMs?: number;
  /**
   * How long a retried hand-off watches a cluster where an earlier attempt recorded its intent to
   * POST but nothing shows that the POST arrived, before it concludes that nothing happened. Default 5 s.
   */
  resumeWatchMs?: number;
  /** Called right after the pre-POST drain of the old leader and the candidate (tests: a crash there). */
  afterDrain?: () => void;
}

/** What the pre-check saw: the plan the cutover and the verification work from. */
export interface HandoffPlan {
  action: HandoffAction;
  /** The leader when checked (undefined for a failover with no leader). */
  leader?: string;
  candidate: string;
  /** The leader's timeline when checked (the candidate's own for a failover). */
  timeline: number;
  /** Whether the candidate was picked by pgha (no --to). */
  chosen: boolean;
  maxLagBytes: number;
  members: {
    name: string;
    role: string;
    state: string;
    timeline?: number;
    lagBytes: number | null;
    noFailover: boolean;
  }[];
  /** A healthy leader was there and --force overrode the refusal (failover only). */
  forced?: boolean;
}

export interface CutoverTimings {
  /** When the POST was sent (epoch ms); the others are ms since then. */
  postedAt?: number;
  oldLeaderCutMs?: number;
  candidatePrimary200Ms?: number;
  candidateWritableMs?: number;
  routedMs?: number;
  postAnsweredMs?: number;
}

export interface CutoverResult {
  /** switched: done now; already-done: a previous attempt did it (resumed); the others fail the runbook. */
  outcome: 'switched' | 'already-done';
  leader: string;
  postStatus?: number;
  postText?: string;
  timings: CutoverTimings;
  routedOn: string[];
  /** What a retried attempt found of the earlier ones and what it did about it. */
  resumed?: string;
}

export interface VerifyResult {
  leader: string;
  timeline: number;
  oldLeader?:
    { name: string; state: string; lagBytes: number | null } | { name: string; state: 'unreachable' };
  /** `down`: the node's CT was stopped, so it was neither routed nor checked (the others were). */
  haproxy: { node: string; writeServerUp: string[]; writeLandedOn: string | null; down?: true }[];
  members: { name: string; role: string; state: string; timeline?: number; lagBytes: number | null }[];
}

/**
 * What the hand-off keeps in its heartbeat details (poll.ts keepInHeartbeats): never dropped by a
 * later heartbeat, carried forward by every retried attempt, so that no attempt POSTs blindly.
 */
export interface HandoffMemo {
  /** Recorded by the first attempt before anything else (before the POST): it may POST. */
  intent?: { action: HandoffAction; from?: string; to: string; at: number; attempt: number };
  /** The POST was handed to the HTTP client (epoch ms, attempt). */
  posted?: { at: number; attempt: number };
  /** Patroni's answer to it, when one came. */
  answer?: { status: number; text: string };
}
