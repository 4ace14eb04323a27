/**
 * The activity option profiles every runbook picks from, by name, so that a timeout or a retry
 * policy is decided once and reads the same everywhere:
 *
 *   quick        a worker-only call (smoke): 30 s, retried
 *   nodeStep     one look-then-act on one node (install, start): long, retried with backoff
 *   gate         a bounded poll that fails with what it saw (deploy's gates): retried once
 *   precheck     a switchover's pre-check / re-check / verify: a refusal is final
 *   handoff      the switchover hand-off: a short heartbeat timeout so a dead worker is noticed in
 *                seconds; the retried attempt looks before it acts
 *   maintenance  a maintenance pre-check or quick read/write: a refusal is final
 *   restart      a member's restart (POST + bounded wait that heartbeats every second)
 *   longWait     a re-clone (POST /reinitialize + a bounded wait that heartbeats every second)
 *   drill        a restore drill's copy, recovery and checks (hours, heartbeating)
 *   notify       a webhook notification: bounded, retried for a minute, never fails the runbook
 *   restore      a restore's plan, copy, bootstrap and checks (hours, heartbeating)
 *
 * Pure data (no I/O): imported by workflows, so it runs in the workflow sandbox.
 *
 * `summarized<Activities>('nodeStep')` is the same proxy with a summary first on every call, so the
 * Web UI's timeline says what and where (`installHaproxy haproxy1 (CT 100)`) instead of a bare type:
 *
 *   const node = summarized<Activities>('nodeStep');
 *   await node.installEtcd(at(inv, hostname), { inv, hostname });
 */
import { proxyActivities } from '@temporalio/workflow';
import type { ActivityOptions } from '@temporalio/workflow';
import { Failures } from '../runbooks/failures';

/** What a maintenance step refuses or fails with: never worth a retry. */
const maintenanceFinal = [
  Failures.MaintenanceRefused,
  Failures.MaintenanceFailed,
  Failures.PatroniAuthRejectedError,
];

export const activityOptions = {
  quick: {
    startToCloseTimeout: '30s',
    heartbeatTimeout: '10s',
    retry: { initialInterval: '1s', maximumAttempts: 5 },
  },
  nodeStep: {
    startToCloseTimeout: '15m',
    heartbeatTimeout: '10s', // every activity heartbeats while it runs (whileAlive): a dead worker is noticed in 10 s
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
  },
  gate: {
    startToCloseTimeout: '10m',
    heartbeatTimeout: '10s',
    retry: { initialInterval: '5s', maximumAttempts: 2 },
  },
  precheck: {
    startToCloseTimeout: '5m',
    heartbeatTimeout: '10s',
    retry: {
      initialInterval: '2s',
      maximumAttempts: 2,
      nonRetryableErrorTypes: [Failures.SwitchoverRefused],
    },
  },
  handoff: {
    startToCloseTimeout: '5m',
    heartbeatTimeout: '4s',
    retry: { initialInterval: '1s', maximumAttempts: 3, nonRetryableErrorTypes: [Failures.SwitchoverFailed] },
  },
  maintenance: {
    startToCloseTimeout: '3m',
    heartbeatTimeout: '10s',
    retry: {
      initialInterval: '2s',
      maximumAttempts: 3,
      nonRetryableErrorTypes: [...maintenanceFinal, Failures.InvalidConfigKey],
    },
  },
  restart: {
    startToCloseTimeout: '12m',
    heartbeatTimeout: '10s',
    retry: { initialInterval: '2s', maximumAttempts: 3, nonRetryableErrorTypes: maintenanceFinal },
  },
  longWait: {
    startToCloseTimeout: '20m',
    heartbeatTimeout: '10s',
    retry: { initialInterval: '2s', maximumAttempts: 3, nonRetryableErrorTypes: maintenanceFinal },
  },
  /**
   * A restore drill's steps (a copy of the whole backup and its recovery: hours for a large one,
   * bounded inside; heartbeating through every wait); a refusal (unknown backup) is final.
   */
  drill: {
    startToCloseTimeout: '2h',
    heartbeatTimeout: '10s',

    retry: {
      initialInterval: '5s',
      maximumAttempts: 3,
      nonRetryableErrorTypes: [Failures.DrillRefused],
    },
  },
  /**
   * A restore's steps (the copy of a whole backup and its WAL, the bootstrap's recovery: hours for a
   * large one, bounded inside, heartbeating); a refusal (backup, window, cluster) is final.
   */
  restore: {
    startToCloseTimeout: '2h',
    heartbeatTimeout: '10s',
    retry: {
      initialInterval: '5s',
      maximumAttempts: 3,
      nonRetryableErrorTypes: [Failures.RestoreRefused],
    },
  },
  /** The guardian's etcd watch: up to 10 min, heartbeating every second; a dead worker is noticed in 5 s, retried without end. */
  guardWatch: {
    startToCloseTimeout: '11m',
    heartbeatTimeout: '5s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' },
  },
  /** The guardian's routing of a new leader: bounded by the inventory's ttl (+30 s) inside; a timeout is final. */
  guardRoute: {
    startToCloseTimeout: '5m',
    heartbeatTimeout: '5s',
    retry: {
      initialInterval: '1s',
      maximumAttempts: 3,
      nonRetryableErrorTypes: [Failures.GuardianRouteTimeout],
    },
  },
  /**
   * A notification (activities/notify.ts): one POST bounded at 10 s, retried for a minute at most;
   * a refused or invalid webhook is final. The runbook never fails for it.
   */
  notify: {
    startToCloseTimeout: '15s',
    scheduleToCloseTimeout: '1m',
    retry: {
      initialInterval: '1s',
      backoffCoefficient: 2,
      maximumInterval: '10s',
      nonRetryableErrorTypes: [Failures.NotifyWebhookInvalid, Failures.NotifyWebhookRefused],
    },
  },
} satisfies Record<string, ActivityOptions>;

export type ActivityProfile = keyof typeof activityOptions;

/** An activity proxy whose functions take a summary (what and where) before their arguments. */
export type Summarized<A> = {
  [K in keyof A]: A[K] extends (...args: infer P) => infer R
    ? (where: string, ...args: P) => Promise<Awaited<R>>
    : never;
};

/** The summary an activity is scheduled with: its type, then where (`installEtcd etcd1 (CT 109)`). */
export function activitySummary(activityType: string, where: string): string {
  return where ? `${activityType} ${where}` : activityType;
}

/**
 * The activities of one profile (or options of their own), each called with a summary first (user metadata: it goes through
 * the payload codec like every payload, and changes no command, so a released workflow replays).
 */
export function summarized<A>(profile: ActivityProfile | ActivityOptions): Summarized<A> {
  const plain = proxyActivities(typeof profile === 'string' ? activityOptions[profile] : profile);
  return new Proxy({} as Summarized<A>, {
    get(_, name) {
      if (typeof name !== 'string') throw new TypeError(`activity names are strings, got ${String(name)}`);
      return (where: string, ...args: unknown[]) =>
        plain[name]!.executeWithOptions(
          { summary: activitySummary(name, where) } as ActivityOptions,
          args as [],
        );
    },
  });
}

/** A node as the timeline names it: `pg102 (CT 102)`; several: `pg102, pg103 (CT 102, 103)`. */
export function at(
  inv: { nodes: Record<string, readonly { hostname: string; vmid: number }[]> },
  ...hostnames: string[]
): string {
  const all = Object.values(inv.nodes).flat();
  const vmids = hostnames.map((h) => all.find((n) => n.hostname === h)?.vmid);
  const known = vmids.filter((v): v is number => v !== undefined);
  return known.length ? `${hostnames.join(', ')} (CT ${known.join(', ')})` : hostnames.join(', ');
}
