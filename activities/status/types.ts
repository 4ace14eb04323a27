/** The shapes of a status report and of what it is collected from. */
import type { EtcdActivities } from '../etcd';
import type { HaproxyActivities, HaproxyNode } from '../haproxy';
import type { PatroniActivities } from '../patroni';
import type { PostgresActivities } from '../postgres';

export interface StatusInput {
  cluster: string;
  etcd: { members: { name: string; url: string }[] };
  patroni: {
    namespace: string;
    scope: string;
    /** `url` is the REST API base (http://10.213.50.21:8008); host/port is PostgreSQL's address. */
    members: { name: string; url: string; host: string; port: number }[];
    /** Patroni's maximum_lag_on_failover: a replica further behind is reported. */
    maximumLagBytes: number;
  };
  /** SQL checks per member (pg_is_in_recovery, timeline); omitted → not asked. */
  postgres?: { user: string; passwordRef: string; database?: string };
  /** HAProxy nodes, asked through the runtime API; omitted → not asked. */
  haproxy?: {
    nodes: HaproxyNode[];
    /** Backend routed to the leader only (e.g. checked on /primary), when known. */
    writeBackend?: string;
    /** Backend routed to replicas only (checked on /replica), when known. */
    readBackend?: string;
  };
}

export interface EtcdMemberStatus {
  name: string;
  endpoint: string;
  healthy: boolean;
  isLeader: boolean;
  version: string | null;
  dbSizeBytes: number | null;
  raftTerm: string | null;
  error?: string;
}

export interface PatroniMemberStatus {
  name: string;
  host: string;
  /** Its REST API answered GET /patroni. */
  reachable: boolean;
  /** From GET /cluster (leader, replica, sync_standby ...), null when the DCS does not list it. */
  role: string | null;
  /** The member's own GET /patroni role (primary/replica), normalised across Patroni versions. */
  ownRole: string | null;
  state: string | null;
  timeline: number | null;
  lagBytes: number | null;
  /** Where lagBytes comes from: the leader's pg_stat_replication (exact) or Patroni's /cluster. */
  lagFrom: 'pg_stat_replication' | 'patroni' | null;
  streaming: boolean | null;
  pendingRestart: boolean;
  noFailover: boolean;
  patroniVersion: string | null;
  /** GET /patroni server_version (180004), null when not reported. */
  serverVersion?: number | null;
  /** database_system_identifier from the member's own GET /patroni. */
  systemId: string | null;
  /** PostgreSQL asked directly, when credentials were given. */
  sql?: { inRecovery: boolean; timeline: number | null } | { error: string };
  error?: string;
}

export interface HaproxyServerStatus {
  backend: string;
  server: string;
  state: string;
  status: string;
  checkStatus: string;
}

export interface HaproxyNodeStatus {
  name: string;
  /** Its CT and admin socket, for the commands a report suggests. */
  vmid?: number;
  socket?: string;
  reachable: boolean;
  servers: HaproxyServerStatus[];
  error?: string;
}

export type Verdict = 'healthy' | 'degraded' | 'down';

export interface ClusterStatus {
  cluster: string;
  collectedAt: string;
  etcd: {
    members: EtcdMemberStatus[];
    leader: string | null;
    healthy: number;
    total: number;
    quorum: boolean;
  };
  patroni: {
    scope: string;
    members: PatroniMemberStatus[];
    /** The leader according to GET /cluster. */
    leader: string | null;
    /** The value of /<namespace>/<scope>/leader in etcd. */
    leaderKey: { key: string; value: string | null } | { key: string; error: string };
    /** Keys under the prefix (relative: leader, members/pg102 ...) and the `initialize` value. */
    keys: { prefix: string; keys: string[]; initialize: string | null } | { error: string };
    /** Which member's GET /cluster was used. */
    clusterFrom: string | null;
    paused: boolean;
    maximumLagBytes: number;
  };
  haproxy:
    | { asked: false; reason: string }
    | { asked: true; nodes: HaproxyNodeStatus[]; writeBackend?: string; readBackend?: string };
  /** warnings: facts that do not change the verdict (a Patroni that does not support this PostgreSQL). */
  verdict: { status: Verdict; reasons: string[]; warnings?: string[] };
}

export interface StatusDeps {
  etcd: EtcdActivities;
  patroni: PatroniActivities;
  postgres?: PostgresActivities;
  /** Absent when no runtime-API transport is wired: HAProxy is then reported as unknown. */
  haproxy?: HaproxyActivities;
}
