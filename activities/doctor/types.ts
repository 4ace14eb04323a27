/**
 * What `pgha doctor` observes and what it concludes. The observations are plain data (collected by
 * collect.ts through the system modules); every check in checks.ts is a pure function of them.
 */
import type { PgHbaRule } from '../postgres';
import type { ClusterStatus } from '../status/types';
import type { PatroniTiming } from '../../runbooks/timing';

/** A value, or why it could not be read (the CT stopped, SQL refused ...). */
export type Observed<T> = { ok: true; value: T } | { ok: false; error: string };

/** One listening TCP socket inside a CT (`ss -Hltnp`): address, port and the owning process. */
export interface ListeningSocket {
  address: string;
  port: number;
  process: string | null;
}

export interface EtcdCtObservation {
  name: string;
  vmid: number;
  /** The inventory's address for this member. */
  ip: string;
  /** The CT's own IPv4 addresses (`ip -4 -o addr`). */
  addresses: Observed<string[]>;
  /** /etc/etcd/etcd.conf as KEY=value pairs. */
  conf: Observed<Record<string, string>>;
  listening: Observed<ListeningSocket[]>;
}

/** One row of pg_hba_file_rules (what the file says: what the next reload loads). */
export type HbaRule = PgHbaRule;

export interface PostgresCtObservation {
  name: string;
  vmid: number;
  ip: string;
  /** `stat -c '%U %a'` of the data directory. */
  dataDir: Observed<{ path: string; owner: string; mode: string }>;
  /** The last lines of `journalctl -u patroni` (oldest first). */
  patroniJournal: Observed<string[]>;
  /** wal_level, max_wal_senders, max_replication_slots as this server runs now. */
  settings: Observed<Record<string, string>>;
  hba: Observed<HbaRule[]>;
}

/** One CT's clock against the machine pgha runs on: the CT's time minus the midpoint of the call. */
export interface ClockObservation {
  name: string;
  vmid: number;
  /** Milliseconds, and ± half the round trip. */
  offset: Observed<{ offsetMs: number; uncertaintyMs: number }>;
}

export interface DoctorObservations {
  cluster: string;
  collectedAt: string;
  status: ClusterStatus;
  etcd: EtcdCtObservation[];
  postgres: PostgresCtObservation[];
  clocks: ClockObservation[];
  /** Patroni's dynamic configuration (GET /config from the first member that answers). */
  patroniConfig: Observed<Record<string, unknown>>;
  /** What the inventory asks for (the reference some checks compare with). */
  expected: {
    etcdClientPort: number;
    etcdPeerPort: number;
    osUser: string;
    replicationUser: string;
    timing: PatroniTiming;
    /** PostgreSQL members that must be able to replicate (and Barman's streaming source, if any). */
    replicationSources: { name: string; ip: string; user: string }[];
    /** Barman streams WAL through a slot of its own: one sender and one slot more. */
    backupStreams: number;
  };
}

export type CheckStatus = 'pass' | 'warn' | 'fail' | 'unknown';

export interface DoctorCheck {
  id: string;
  /** What is checked, one line. */
  title: string;
  status: CheckStatus;
  /** What was found: empty when it passes. */
  findings: string[];
  /** The seed's remedy in pgha's words (shown when it does not pass). */
  remedy: string;
}

export interface DoctorReport {
  cluster: string;
  collectedAt: string;
  checks: DoctorCheck[];
  /** pass: every check passed; warn: a warning or a check that could not run; fail: a check failed. */
  verdict: 'pass' | 'warn' | 'fail';
}
