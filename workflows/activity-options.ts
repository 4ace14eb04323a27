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
 *
 * Pure data (no I/O): imported by workflows, so it runs in the workflow sandbox.
 */
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
    retry: { initialInterval: '1s', maximumAttempts: 5 },
  },
  nodeStep: {
    startToCloseTimeout: '15m',
    heartbeatTimeout: '30s', // they heartbeat while each command runs: a dead worker is noticed in 30 s
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
  },
  gate: {
    startToCloseTimeout: '10m',
    heartbeatTimeout: '30s',
    retry: { initialInterval: '5s', maximumAttempts: 2 },
  },
  precheck: {
    startToCloseTimeout: '5m',
    heartbeatTimeout: '1m',
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
    heartbeatTimeout: '1m',
    retry: {
      initialInterval: '2s',
      maximumAttempts: 3,
      nonRetryableErrorTypes: [...maintenanceFinal, Failures.InvalidConfigKey],
    },
  },
  restart: {
    startToCloseTimeout: '12m',
    heartbeatTimeout: '30s',
    retry: { initialInterval: '2s', maximumAttempts: 3, nonRetryableErrorTypes: maintenanceFinal },
  },
  longWait: {
    startToCloseTimeout: '20m',
    heartbeatTimeout: '30s',
    retry: { initialInterval: '2s', maximumAttempts: 3, nonRetryableErrorTypes: maintenanceFinal },
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
} satisfies Record<string, ActivityOptions>;

export type ActivityProfile = keyof typeof activityOptions;
