/**
 * etcd: the coordination store Patroni keeps its state in (etcd's v3 store, keys under
 * `/<namespace>/<scope>/`). What the seed checks by hand with `etcdctl endpoint health`,
 * `member list` and `get --prefix /patroni/`, as activities.
 *
 * Every endpoint is asked on its own (one client per member, its own short deadline), so one dead
 * member shows as unhealthy instead of being hidden by the client's failover to another member.
 * Arguments and results are plain data; the factory owns how clients are made.
 */
import { Etcd3, type IOptions } from 'etcd3';
import { noop } from 'cockatiel';
import { pollUntil } from './poll';

export interface EtcdDeps {
  /** Per-call deadline (status, get, member list). Default 2000 ms. */
  callTimeoutMs?: number;
  /** How a client is made (tests may wrap it). Default: `new Etcd3(opts)`. */
  newClient?: (opts: IOptions) => Etcd3;
}

export interface EtcdArgs {
  /** Client URLs of the members, e.g. `http://10.213.50.51:2379`. */
  endpoints: string[];
  /** Overrides the factory's per-call deadline. */
  timeoutMs?: number;
}

export interface EtcdEndpointHealth {
  endpoint: string;
  /** Answered status, sees a leader, served a linearizable (quorum) read and reports no alarm. */
  healthy: boolean;
  /** Member id in hex, as etcdctl prints it. */
  memberId?: string;
  version?: string;
  dbSizeBytes?: number;
  dbSizeInUseBytes?: number;
  /** The leader this member believes in (hex), absent when it sees none. */
  leaderId?: string;
  isLeader?: boolean;
  isLearner?: boolean;
  raftTerm?: string;
  raftIndex?: string;
  /** Alarms reported by the member (e.g. NOSPACE). */
  alarms?: string[];
  /** Why it is unhealthy, when it is. */
  error?: string;
  tookMs: number;
}

export interface EtcdMember {
  id: string;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

export interface EtcdClusterView {
  endpoints: EtcdEndpointHealth[];
  /** From the first member that answered member list; null when none did. */
  members: EtcdMember[] | null;
  /** The leader most healthy members agree on, with its name from the member list. */
  leader: { id: string; name: string | null } | null;
  healthyCount: number;
  /** A majority of the listed endpoints is healthy. */
  quorum: boolean;
}

export interface EtcdPatroniArgs extends EtcdArgs {
  /** Patroni's `namespace` (the seed: `/patroni/`); slashes are optional. */
  namespace: string;
  /** Patroni's `scope` (the seed: `postgres`). */
  scope: string;
}

export interface EtcdKeyValue {
  key: string;
  /** Present when values were asked for; cut to 2000 characters. */
  value?: string;
}

const ENDPOINT_RE = /^https?:\/\/[A-Za-z0-9.\-[\]:]+:\d{1,5}$/;

export function validateEndpoints(endpoints: unknown): string[] {
  if (!Array.isArray(endpoints) || endpoints.length === 0) {
    throw new TypeError('etcd endpoints: expected a non-empty list like ["http://10.213.50.51:2379"]');
  }
  for (const e of endpoints) {
    if (typeof e !== 'string' || !ENDPOINT_RE.test(e)) {
      throw new TypeError(
        `etcd endpoint ${JSON.stringify(e)}: expected the form http://<ip>:<port>, e.g. http://10.213.50.51:2379`,
      );
    }
  }
  return endpoints as string[];
}

/** `/patroni/` + `postgres` → `/patroni/postgres/` (what Patroni's etcd3 DCS uses as a prefix). */
export function patroniPrefix(namespace: string, scope: string): string {
  const ns = namespace.replace(/^\/+|\/+$/g, '');
  if (!scope || /[/\s]/.test(scope)) {
    throw new TypeError(
      `patroni scope ${JSON.stringify(scope)}: expected a name without slashes or spaces, e.g. postgres`,
    );
  }
  return ns ? `/${ns}/${scope}/` : `/${scope}/`;
}

/** etcd ids arrive as decimal strings of a uint64; etcdctl shows hex. '0' (no leader) → undefined. */
export function hexId(id: string | undefined): string | undefined {
  if (id === undefined || id === '' || id === '0') return undefined;
  try {
    return BigInt(id).toString(16);
  } catch {
    return id;
  }
}

/** grpc's long messages, shortened to what an operator needs: refused / timed out / the etcd error. */
export function errText(err: unknown): string {
  const msg = (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim();
  const last = /Last error: (?:Error: )?(.+?)\.? Resolution note/.exec(msg)?.[1];
  if (/^14 UNAVAILABLE/.test(msg)) {
    if (last && last !== 'null') return `unavailable: ${last}`;
    return 'unavailable: no connection established';
  }
  const deadline = /^4 DEADLINE_EXCEEDED: Deadline exceeded after ([\d.]+s)/.exec(msg);
  if (deadline) return `no answer within ${deadline[1]} (deadline exceeded)`;
  return msg.slice(0, 300);
}

type NewEtcdClient = (o: IOptions) => Etcd3;

/**
 * A client bound to the given hosts, with no retries and no circuit breaker: one call, one deadline
 * (the dial waits at most `dialCapMs`).
 */
async function withEtcdClient<T>(
  newClient: NewEtcdClient,
  hosts: string[],
  timeoutMs: number,
  fn: (c: Etcd3) => Promise<T>,
  dialCapMs = timeoutMs,
): Promise<T> {
  const client = newClient({
    hosts,
    dialTimeout: Math.min(timeoutMs, dialCapMs),
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
    faultHandling: { host: () => noop, global: noop },
  });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/**
 * Runs `fn` against the members one after another until one answers: with retries off, a client
 * over several hosts would fail on whichever dead member it happened to pick.
 */
async function withAnyEtcdEndpoint<T>(
  newClient: NewEtcdClient,
  endpoints: string[],
  timeoutMs: number,
  what: string,
  fn: (c: Etcd3) => Promise<T>,
  dialCapMs?: number,
): Promise<T> {
  const failures: string[] = [];
  for (const endpoint of endpoints) {
    try {
      return await withEtcdClient(newClient, [endpoint], timeoutMs, fn, dialCapMs);
    } catch (err) {
      failures.push(`${endpoint}: ${errText(err)}`);
    }
  }
  throw new EtcdUnavailableError(`no etcd member answered ${what}: ${failures.join('; ')}`);
}

export function createEtcdActivities(deps: EtcdDeps = {}) {
  const defaultTimeout = deps.callTimeoutMs ?? 2000;
  const newClient = deps.newClient ?? ((o: IOptions) => new Etcd3(o));

  const withClient = <T>(hosts: string[], timeoutMs: number, fn: (c: Etcd3) => Promise<T>) =>
    withEtcdClient(newClient, hosts, timeoutMs, fn);
  const withAnyEndpoint = <T>(
    endpoints: string[],
    timeoutMs: number,
    what: string,
    fn: (c: Etcd3) => Promise<T>,
  ) => withAnyEtcdEndpoint(newClient, endpoints, timeoutMs, what, fn);

  async function endpointHealth(endpoint: string, timeoutMs: number): Promise<EtcdEndpointHealth> {
    const started = Date.now();
    const r: EtcdEndpointHealth = { endpoint, healthy: false, tookMs: 0 };
    try {
      await withClient([endpoint], timeoutMs, async (c) => {
        const s = await c.maintenance.status();
        r.memberId = hexId(s.header.member_id);
        r.version = s.version;
        r.dbSizeBytes = Number(s.dbSize);
        if (s.dbSizeInUse !== undefined && s.dbSizeInUse !== '') r.dbSizeInUseBytes = Number(s.dbSizeInUse);
        r.leaderId = hexId(s.leader);
        r.isLeader = r.leaderId !== undefined && r.leaderId === r.memberId;
        r.isLearner = Boolean(s.isLearner);
        r.raftTerm = s.raftTerm;
        r.raftIndex = s.raftIndex;
        r.alarms = (s.errors ?? []).filter(Boolean);
        if (!r.leaderId) {
          r.error = 'member sees no leader (no quorum?)';
          return;
        }
        // A linearizable read goes through raft: it succeeds only with a working quorum (etcdctl does the same).
        await c.get('health').serializable(false).string();
        if (r.alarms.length > 0) {
          r.error = `alarms: ${r.alarms.join(', ')}`;
          return;
        }
        r.healthy = true;
      });
    } catch (err) {
      r.healthy = false;
      r.error = errText(err);
    }
    r.tookMs = Date.now() - started;
    return r;
  }

  async function etcdEndpointHealth(args: EtcdArgs): Promise<EtcdEndpointHealth[]> {
    const endpoints = validateEndpoints(args.endpoints);
    const timeoutMs = args.timeoutMs ?? defaultTimeout;
    return Promise.all(endpoints.map((e) => endpointHealth(e, timeoutMs)));
  }

  async function etcdMembers(args: EtcdArgs): Promise<EtcdMember[]> {
    const endpoints = validateEndpoints(args.endpoints);
    const timeoutMs = args.timeoutMs ?? defaultTimeout;
    return withAnyEndpoint(endpoints, timeoutMs, 'member list', async (c) => {
      const res = await c.cluster.memberList({});
      return res.members.map((m) => ({
        id: hexId(m.ID) ?? m.ID,
        name: m.name,
        peerUrls: m.peerURLs ?? [],
        clientUrls: m.clientURLs ?? [],
        isLearner: Boolean(m.isLearner),
      }));
    });
  }

  async function etcdCluster(args: EtcdArgs): Promise<EtcdClusterView> {
    const [endpoints, members] = await Promise.all([
      etcdEndpointHealth(args),
      etcdMembers(args).catch(() => null),
    ]);
    const healthy = endpoints.filter((e) => e.healthy);
    const votes = new Map<string, number>();
    for (const e of healthy) if (e.leaderId) votes.set(e.leaderId, (votes.get(e.leaderId) ?? 0) + 1);
    const top = [...votes.entries()].sort((a, b) => b[1] - a[1])[0];
    const leader = top ? { id: top[0], name: members?.find((m) => m.id === top[0])?.name ?? null } : null;
    return {
      endpoints,
      members,
      leader,
      healthyCount: healthy.length,
      quorum: healthy.length > endpoints.length / 2,
    };
  }

  async function etcdLeader(args: EtcdArgs): Promise<{ id: string; name: string | null } | null> {
    return (await etcdCluster(args)).leader;
  }

  async function etcdPatroniKeys(
    args: EtcdPatroniArgs & { withValues?: boolean },
  ): Promise<{ prefix: string; keys: EtcdKeyValue[] }> {
    const endpoints = validateEndpoints(args.endpoints);
    const prefix = patroniPrefix(args.namespace, args.scope);
    const keys = await withAnyEndpoint(
      endpoints,
      args.timeoutMs ?? defaultTimeout,
      `get --prefix ${prefix}`,
      async (c) => {
        if (!args.withValues) return (await c.getAll().prefix(prefix).keys()).map((key) => ({ key }));
        const all = await c.getAll().prefix(prefix).strings();
        return Object.entries(all).map(([key, value]) => ({ key, value: value.slice(0, 2000) }));
      },
    );
    keys.sort((a, b) => a.key.localeCompare(b.key));
    return { prefix, keys };
  }

  /** The value of `/<namespace>/<scope>/leader`: the name of the member holding the leader lock, or null. */
  async function etcdPatroniLeaderKey(args: EtcdPatroniArgs): Promise<{ key: string; value: string | null }> {
    const endpoints = validateEndpoints(args.endpoints);
    const key = `${patroniPrefix(args.namespace, args.scope)}leader`;
    const value = await withAnyEndpoint(endpoints, args.timeoutMs ?? defaultTimeout, `get ${key}`, (c) =>
      c.get(key).string(),
    );
    return { key, value };
  }

  /**
   * The leader key with its lease: who holds it and the TTL Patroni gave the lease (grantedTtl,
   * Patroni's ttl since it last applied the dynamic configuration) and what is left of it (ttl).
   * null when no member holds the key.
   */
  async function etcdPatroniLeaderLease(
    args: EtcdPatroniArgs,
  ): Promise<{ key: string; value: string; grantedTtl: number; ttl: number } | null> {
    const endpoints = validateEndpoints(args.endpoints);
    const key = `${patroniPrefix(args.namespace, args.scope)}leader`;
    return withAnyEndpoint(
      endpoints,
      args.timeoutMs ?? defaultTimeout,
      `get ${key} and its lease`,
      async (c) => {
        const kv = (await c.get(key).exec()).kvs[0];
        if (!kv) return null;
        const lease = await c.leaseClient.leaseTimeToLive({ ID: kv.lease });
        return {
          key,
          value: kv.value.toString(),
          grantedTtl: Number(lease.grantedTTL),
          ttl: Number(lease.TTL),
        };
      },
    );
  }

  /**
   * Bounded wait until at least `expected` endpoints are healthy and agree on one leader (the seed's
   * health gate after starting etcd with `--no-block`). Heartbeats every check.
   */
  async function etcdWaitHealthy(
    args: EtcdArgs & { expected?: number; waitTimeoutMs: number; intervalMs?: number },
  ): Promise<EtcdEndpointHealth[]> {
    const endpoints = validateEndpoints(args.endpoints);
    const expected = args.expected ?? endpoints.length;
    return pollUntil(
      {
        what: `${expected} healthy etcd member(s) with one leader`,
        timeoutMs: args.waitTimeoutMs,
        intervalMs: args.intervalMs ?? 500,
      },
      async () => {
        const health = await etcdEndpointHealth(args);
        const healthy = health.filter((h) => h.healthy);
        const leaders = new Set(healthy.map((h) => h.leaderId));
        return {
          done: healthy.length >= expected && leaders.size === 1,
          value: health,
          describe: health
            .map((h) => `${h.endpoint} ${h.healthy ? 'healthy' : `unhealthy (${h.error ?? '?'})`}`)
            .join(', '),
        };
      },
    );
  }

  return {
    etcdEndpointHealth,
    etcdMembers,
    etcdCluster,
    etcdLeader,
    etcdPatroniKeys,
    etcdPatroniLeaderKey,
    etcdPatroniLeaderLease,
    etcdWaitHealthy,
  };
}

export class EtcdUnavailableError extends Error {
  override readonly name = 'EtcdUnavailableError';
}

export type EtcdActivities = ReturnType<typeof createEtcdActivities>;

/** A member's id as etcd's API takes it (decimal uint64) from the hex form etcdctl and pgha show. */
export function decimalId(hex: string): string {
  if (!/^[0-9a-f]{1,16}$/.test(hex))
    throw new TypeError(`etcd member id ${JSON.stringify(hex)}: expected hex`);
  return BigInt(`0x${hex}`).toString(10);
}

export interface EtcdAlarm {
  memberId: string;
  alarm: string;
}

/**
 * The etcd operations the etcd runbooks need beyond looking (move-leader, compaction, defragment,
 * alarms, member add/remove, deleting Patroni's keys). Not registered as activities of their own:
 * only activities/etcd-ops/ calls them, after its pre-checks. Each call goes to one named endpoint
 * (or the first that answers) with its own deadline, no retries: the caller looks again and decides.
 */
export function createEtcdAdmin(deps: EtcdDeps = {}) {
  const defaultTimeout = deps.callTimeoutMs ?? 2000;
  const newClient = deps.newClient ?? ((o: IOptions) => new Etcd3(o));

  // Admin calls may be long (defragment, snapshot): the dial still gives up after 5 s.
  const on = <T>(endpoint: string, timeoutMs: number, fn: (c: Etcd3) => Promise<T>) =>
    withEtcdClient(newClient, validateEndpoints([endpoint]), timeoutMs, fn, 5000);
  const onAny = <T>(endpoints: string[], timeoutMs: number, what: string, fn: (c: Etcd3) => Promise<T>) =>
    withAnyEtcdEndpoint(newClient, validateEndpoints(endpoints), timeoutMs, what, fn, 5000);

  return {
    /** `etcdctl move-leader <target>`, sent to the current leader's endpoint (etcd requires it). */
    async moveLeader(args: { leaderEndpoint: string; targetId: string; timeoutMs?: number }): Promise<void> {
      await on(args.leaderEndpoint, args.timeoutMs ?? 10_000, (c) =>
        c.maintenance.moveLeader({ targetID: decimalId(args.targetId) }),
      );
    },
    /** The store's current revision (from a quorum read's header). */
    async revision(args: { endpoints: string[]; timeoutMs?: number }): Promise<string> {
      return onAny(args.endpoints, args.timeoutMs ?? defaultTimeout, 'a revision read', async (c) => {
        const r = await c.kv.range({ key: Buffer.from('\0'), limit: 1, count_only: true });
        return r.header.revision;
      });
    },
    /** `etcdctl compaction --physical <rev>`: history before `revision` dropped cluster-wide. */
    async compact(args: { endpoints: string[]; revision: string; timeoutMs?: number }): Promise<void> {
      await onAny(args.endpoints, args.timeoutMs ?? 60_000, `compaction at ${args.revision}`, (c) =>
        c.kv.compact({ revision: args.revision, physical: true }),
      );
    },
    /** `etcdctl defrag` of one member (it blocks that member while it runs). */
    async defragment(args: { endpoint: string; timeoutMs?: number }): Promise<void> {
      await on(args.endpoint, args.timeoutMs ?? 120_000, (c) => c.maintenance.defragment());
    },
    /** `etcdctl alarm list`. */
    async alarms(args: { endpoints: string[]; timeoutMs?: number }): Promise<EtcdAlarm[]> {
      return onAny(args.endpoints, args.timeoutMs ?? defaultTimeout, 'alarm list', async (c) => {
        const r = await c.maintenance.alarm({ action: 'Get', memberID: 0, alarm: 'None' });
        return (r.alarms ?? []).map((a) => ({
          memberId: hexId(a.memberID) ?? a.memberID,
          alarm: String(a.alarm),
        }));
      });
    },
    /** `etcdctl member remove <id>`. */
    async memberRemove(args: { endpoints: string[]; id: string; timeoutMs?: number }): Promise<void> {
      await onAny(args.endpoints, args.timeoutMs ?? 10_000, `member remove ${args.id}`, (c) =>
        c.cluster.memberRemove({ ID: decimalId(args.id) }),
      );
    },
    /** `etcdctl member add --peer-urls=<url>`: the new member's id (hex). */
    async memberAdd(args: { endpoints: string[]; peerUrl: string; timeoutMs?: number }): Promise<string> {
      return onAny(args.endpoints, args.timeoutMs ?? 10_000, `member add ${args.peerUrl}`, async (c) => {
        const r = await c.cluster.memberAdd({ peerURLs: [args.peerUrl] });
        return hexId(r.member.ID) ?? r.member.ID;
      });
    },
    /**
     * Deletes every key under Patroni's `/<namespace>/<scope>/` (and nothing else): the number of
     * keys deleted. The prefix is built by patroniPrefix, never taken from the caller.
     */
    async deletePatroniKeys(args: EtcdPatroniArgs): Promise<number> {
      const prefix = patroniPrefix(args.namespace, args.scope);
      return onAny(args.endpoints, args.timeoutMs ?? 10_000, `delete --prefix ${prefix}`, async (c) => {
        const r = await c.delete().prefix(prefix).exec();
        return Number(r.deleted);
      });
    },
  };
}

export type EtcdAdmin = ReturnType<typeof createEtcdAdmin>;
// ---------------------------------------------------------------------------------------------
// A key watch (the guardian's leader key): etcd pushes every change; nothing is polled.

/** One change of a watched key: its new value, or null when it was deleted (a lease expired). */
export interface EtcdKeyEvent {
  value: string | null;
  /** Local time the event arrived (ms). */
  at: number;
}

export interface EtcdKeyWatch {
  /** The value when the watch was set up (null: absent). */
  initial: string | null;
  close(): Promise<void>;
}

/**
 * Watches `key` on the cluster at `endpoints` (the client moves to another member if one dies):
 * `onEvent` is called for every put and delete after the watch is in place; `onError` when the
 * stream fails for good. The initial value is read after the watch is set up, so no change falls
 * between the two.
 */
export async function watchEtcdKey(
  endpoints: string[],
  key: string,
  onEvent: (e: EtcdKeyEvent) => void,
  onError: (err: unknown) => void,
  timeoutMs = 3000,
): Promise<EtcdKeyWatch> {
  const client = new Etcd3({
    hosts: validateEndpoints(endpoints),
    dialTimeout: timeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
  });
  try {
    const watcher = await client.watch().key(key).create();
    watcher.on('put', (kv) => onEvent({ value: kv.value.toString(), at: Date.now() }));
    watcher.on('delete', () => onEvent({ value: null, at: Date.now() }));
    watcher.on('error', onError);
    const initial = await client.get(key).string();
    return {
      initial,
      close: async () => {
        await watcher.cancel().catch(() => undefined);
        client.close();
      },
    };
  } catch (err) {
    client.close();
    throw err;
  }
}
