/** The guardian's activity shapes: what it depends on and what each activity returns. */
import type { Inventory } from '../../runbooks/schema';
import type { watchEtcdKey } from '../etcd';
import type { SwitchoverDeps } from '../switchover';

export interface GuardianDeps extends SwitchoverDeps {
  /** The etcd key watch (default: etcd.ts watchEtcdKey). */
  watchKey?: typeof watchEtcdKey;
  /** How often the known leader's GET /patroni is sampled for its last LSN. Default 1000 ms. */
  sampleEveryMs?: number;
}

/** The old leader as the guardian last saw it answer as primary (GET /patroni). */
export interface LeaderSample {
  member: string;
  at: number;
  timeline?: number;
  /** xlog.location: the WAL position it had written (bytes). */
  lsn?: number;
}

export interface WatchArgs {
  inv: Inventory;
  /** The holder of the leader key the guardian knows; undefined on its first run (the watch only learns it). */
  known?: string | null;
  /** Return `quiet` after this long without a change (the workflow continues, or continues as new). Default 10 min. */
  maxMs?: number;
}

export interface WatchResult {
  /** changed: the key now names another member than `known`; quiet: nothing moved within maxMs (or the first look). */
  kind: 'changed' | 'quiet';
  old: string | null;
  /** The holder now (null: no holder, the key expired and nobody took it yet). */
  leader: string | null;
  /** When the new holder was seen (ms). */
  observedAt: number;
  /** When the old holder's key disappeared (its lease expired), if the watch saw it. */
  keyGoneAt?: number;
  /** The old leader's last answer as primary, sampled each second while it led. */
  oldLastSeen?: LeaderSample;
}

export interface RouteArgs {
  inv: Inventory;
  leader: string;
  old?: string | null;
  /** Bound of the wait for the new leader to be writable. Default ttl + 30 s. */
  timeoutMs?: number;
}

export interface RouteResult {
  leader: string;
  /** When its /primary was 200 and pg_is_in_recovery() false (ms). */
  writableAt: number;
  /** When every HAProxy had it UP in the write backend (ms). */
  routedAt: number;
  routedOn: string[];
  /** The new leader's timeline, and the WAL position where it began (Patroni's /history). */
  timeline?: number;
  switchLsn?: number;
}
