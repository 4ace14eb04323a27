/**
 * clusterGuardian — one per cluster (`pgha guard start`, or deployCluster with `guard: true`):
 *
 *   watch the leader key in etcd → it names another member and no pgha runbook holds the cluster
 *   → take the cluster lock → route every HAProxy to the new leader the moment it takes writes
 *   (exactly as the switchover hand-off does) → record the event → release the lock → watch again.
 *
 * It never promotes anything (Patroni decides) and never fights a pgha runbook: a change while a
 * runbook holds the cluster lock (a switchover, a restart) is that runbook's, and the guardian only
 * learns the new leader. The record is a child workflow `failoverObserved` (PgOperation =
 * failover-observed, PgNode = the new leader) whose result holds the facts: both members, the
 * timeline, how long writes were refused, the WAL lost. Its id is derived from the event, so a
 * replay or a retry after the worker's crash finds it started and records nothing twice.
 *
 * History stays bounded: after `eventsPerRun` watches (10 min each when quiet) it continues as new,
 * carrying the leader it knows. Stop it with `pgha guard stop` (a cancellation: the watch ends, the
 * run completes).
 *
 * A dry run (`pgha guard start --dry-run`, input `dryRun: true`) reads the leader key once and asks
 * the members who leads, then returns the ordered plan; it watches, locks, routes and records nothing,
 * and runs under an id of its own (guardianDryRunId), never the guardian's.
 */
import {
  ApplicationFailure,
  CancellationScope,
  ParentClosePolicy,
  WorkflowIdReusePolicy,
  continueAsNew,
  defineQuery,
  executeChild,
  isCancellation,
  proxyActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { Activities } from '../activities';
import type { RouteResult, WatchResult } from '../activities/guardian';
import type { Inventory, InventoryInput } from '../runbooks/schema';
import { patroniKeyPrefix } from '../runbooks/topology';
import { activityOptions, at, summarized } from './activity-options';
import { dryRunReport, dryRunning, type DryRunReport } from './dry-run';
import { invalidInput, inventoryOf } from './inventory';
import { clusterLock } from './lock';
import { runbook } from './steps';
import { PgCluster, PgNode, PgOperation, lockWorkflowId, release, runbookWorkflowId } from './messages';

export const GUARDIAN_OPERATION = 'guardian';
export const FAILOVER_OBSERVED_OPERATION = 'failover-observed';

/** The guardian's workflow id: `guardian-<cluster>` (one per cluster: the server refuses a second). */
export const guardianWorkflowId = (cluster: string) => runbookWorkflowId(GUARDIAN_OPERATION, cluster);

/**
 * A dry run's workflow id: `guardian-<cluster>-dry-run-<time>` (e.g. 20261129T100000.123Z), never
 * the guardian's own — a dry run must not keep `pgha guard start` from starting, nor pass for the guardian.
 */
export const guardianDryRunSuffix = (when: Date) => `dry-run-${when.toISOString().replace(/[-:]/g, '')}`;
export const guardianDryRunId = (cluster: string, when: Date) =>
  runbookWorkflowId(GUARDIAN_OPERATION, cluster, guardianDryRunSuffix(when));

export interface GuardianInput {
  /** The inventory as in runbooks/clusters/*.yaml, secrets as references. */
  inventory: InventoryInput;
  /** The leader key's holder the previous run knew (continue-as-new carries it). */
  known?: string | null;
  /** Watches before continuing as new (default 50). */
  eventsPerRun?: number;
  /** A quiet watch returns after this long (default 10 min). */
  watchMs?: number;
  /** Totals carried across runs. */
  observed?: number;
  yielded?: number;
  /**
   * Read the leader key and ask the members who leads, return the ordered plan; watch, lock, route
   * and record nothing. Under an id of its own (guardianDryRunId), never guardian-<cluster>.
   */
  dryRun?: boolean;
}

/** What the guardian has seen, for `pgha guard status` (the `guardian` query). */
export interface GuardianState {
  cluster: string;
  leader: string | null;
  since: string;
  /** failover-observed records this guardian made (all runs). */
  observed: number;
  /** Leader changes made by a pgha runbook, left to it (all runs). */
  yielded: number;
  last?: FailoverFacts;
  phase: string;
}

export const guardianState = defineQuery<GuardianState>('guardian');

/** The facts of one failover Patroni made by itself: the result of its `failoverObserved` run. */
export interface FailoverFacts {
  cluster: string;
  oldLeader: string | null;
  newLeader: string;
  /** The new leader's timeline and where it began (Patroni's /history), when it could be read. */
  timeline?: number;
  switchLsn?: number;
  /** ISO times. */
  oldLastSeenAt?: string;
  keyExpiredAt?: string;
  newHolderAt: string;
  writableAt?: string;
  routedAt?: string;
  /**
   * Writes refused, in ms: from the old leader's last answer as primary (sampled each second, so up
   * to 1 s early) to every HAProxy routed to the new leader.
   */
  writesRefusedMs?: number;
  /** The old leader's last sampled WAL position minus the new timeline's switch point (0: nothing seen lost). */
  lostBytes?: number;
  routedOn?: string[];
  /** Why routing failed (HAProxy was then left to its own checks). */
  routeError?: string;
}

/** The record of one failover: a short child run whose result is the facts, findable by its search attributes. */
export async function failoverObserved(facts: FailoverFacts): Promise<FailoverFacts> {
  return Promise.resolve(facts);
}

const watchActs = proxyActivities<Activities>(activityOptions.guardWatch);
const routeActs = proxyActivities<Activities>(activityOptions.guardRoute);
/** The dry run's looks: quick reads (a watch that knows no leader returns the key's holder at once). */
const look = summarized<Activities>('gate');

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

function factsOf(cluster: string, w: WatchResult, r?: RouteResult, routeError?: string): FailoverFacts {
  const last = w.oldLastSeen;
  return {
    cluster,
    oldLeader: w.old,
    newLeader: w.leader!,
    timeline: r?.timeline,
    switchLsn: r?.switchLsn,
    oldLastSeenAt: iso(last?.at),
    keyExpiredAt: iso(w.keyGoneAt),
    newHolderAt: iso(w.observedAt)!,
    writableAt: iso(r?.writableAt),
    routedAt: iso(r?.routedAt),
    writesRefusedMs: r && last ? r.routedAt - last.at : undefined,
    lostBytes:
      last?.lsn !== undefined && r?.switchLsn !== undefined ? Math.max(0, last.lsn - r.switchLsn) : undefined,
    routedOn: r?.routedOn,
    routeError,
  };
}

/** The record's id: one per (cluster, new leader, timeline) — a second start is refused by the server. */
export function failoverObservedId(cluster: string, facts: FailoverFacts, observedAt: number): string {
  const suffix = facts.timeline !== undefined ? `tl${facts.timeline}` : `at${observedAt}`;
  return runbookWorkflowId(FAILOVER_OBSERVED_OPERATION, cluster, `${facts.newLeader}-${suffix}`);
}

export async function clusterGuardian(input: GuardianInput): Promise<GuardianState | DryRunReport> {
  const inv = inventoryOf(input);
  // Only a run asked for a dry run evaluates the patch: saved histories replay unchanged.
  if (dryRunning(input)) return guardianDryRun(inv, input);
  const cluster = inv.cluster;
  const state: GuardianState = {
    cluster,
    leader: input.known ?? null,
    since: new Date().toISOString(),
    observed: input.observed ?? 0,
    yielded: input.yielded ?? 0,
    phase: 'starting',
  };
  setHandler(guardianState, () => state);
  upsertSearchAttributes([
    { key: PgCluster, value: cluster },
    { key: PgOperation, value: GUARDIAN_OPERATION },
  ]);
  let known: string | null | undefined = input.known;
  const perRun = input.eventsPerRun ?? 50;

  try {
    for (let i = 0; i < perRun; i++) {
      state.phase = `watching the leader key (leader ${known ?? 'not known yet'})`;
      const w = await watchActs.guardianWatch({ inv, known, maxMs: input.watchMs });
      if (w.kind === 'quiet' || w.leader === null) {
        known = w.leader;
        state.leader = known;
        continue;
      }
      await onLeaderChange(cluster, inv, w, state);
      known = w.leader;
      state.leader = known;
    }
  } catch (err) {
    if (isCancellation(err)) {
      state.phase = 'stopped';
      return state;
    }
    throw err;
  }
  return continueAsNew<typeof clusterGuardian>({
    ...input,
    known,
    observed: state.observed,
    yielded: state.yielded,
  });
}

/**
 * The guardian's plan, from one read of the leader key (the guardian's own first look: a watch that
 * knows no leader returns its holder at once) and the members' own word (GET /patroni). No cluster
 * lock (it runs beside any runbook), no watch that waits, no routing, no record.
 */
async function guardianDryRun(inv: Inventory, input: GuardianInput): Promise<DryRunReport> {
  const cluster = inv.cluster;
  const own = guardianWorkflowId(cluster);
  if (workflowInfo().workflowId === own)
    invalidInput(
      `dryRun under the guardian's own id ${own}: a dry run there would keep the guardian from starting ` +
        `and pass for it; start it under another id (pgha guard start --dry-run uses ${own}-dry-run-<time>)`,
    );
  const key = `${patroniKeyPrefix(inv)}leader`;
  const etcd = inv.nodes.etcd.map((n) => n.hostname);
  const haproxy = inv.nodes.haproxy.map((n) => n.hostname);
  const lock = lockWorkflowId(cluster);
  return runbook({ cluster, operation: GUARDIAN_OPERATION, plan: ['look'], lock: false }, async (rb) => {
    const seen = await rb.step('look', async () => ({
      holder: (await look.guardianWatch(`leader key ${key} (dry run)`, { inv })).leader,
      leader: await look.findLeader(`cluster ${cluster} (dry run)`, { inv }),
    }));
    const holder = seen.holder ?? undefined;
    const patroni =
      seen.leader === undefined
        ? 'no member answers as primary'
        : seen.leader === holder
          ? `Patroni's members agree (${seen.leader} answers as primary)`
          : `Patroni's members say ${seen.leader} leads (they differ: a change in flight?)`;
    const watchMin = (input.watchMs ?? 600_000) / 60_000;
    return dryRunReport(cluster, GUARDIAN_OPERATION, [
      `look: the leader key ${key} names ${holder ? at(inv, holder) : 'no member (the guardian would learn the first holder, not route it)'}; ${patroni}`,
      `watch: ${key} on etcd ${at(inv, ...etcd)}: etcd pushes each change (nothing polls)${holder ? `; ${holder}'s GET /patroni sampled each second for its last WAL position` : ''}; a quiet watch returns after ${watchMin} min, continue-as-new after ${input.eventsPerRun ?? 50} watches`,
      `yield: a new holder while a pgha runbook holds the cluster lock ${lock} is that runbook's: learned, never routed or recorded`,
      `lock: otherwise the cluster lock ${lock} taken for the routing and the record (a runbook started meanwhile is refused as busy), released after`,
      `route on ${at(inv, ...haproxy)}: once the new leader takes writes (/primary 200 and out of recovery, within ttl + 30 s = ${inv.patroni.ttl + 30} s), the switchover's routing on each HAProxy's runtime API: the others DOWN, the new leader UP in the write backend and DOWN in the read one`,
      `record: a failover-observed run ${runbookWorkflowId(FAILOVER_OBSERVED_OPERATION, cluster)}-<new leader>-tl<timeline> (PgOperation ${FAILOVER_OBSERVED_OPERATION}, PgNode the new leader): both members, the timeline, writes refused (ms), WAL lost (bytes); then the lock released and the watch goes on`,
    ]);
  });
}

/** A new holder of the leader key: a runbook's (yield) or Patroni's own (route, record). */
async function onLeaderChange(
  cluster: string,
  inv: ReturnType<typeof inventoryOf>,
  w: WatchResult,
  state: GuardianState,
): Promise<void> {
  const leader = w.leader!;
  // The lock: a runbook that holds it made this change (or will route it): leave it alone.
  let lock;
  try {
    lock = await startChild(clusterLock, {
      workflowId: lockWorkflowId(cluster),
      args: [{ cluster, holder: workflowInfo().workflowId, operation: GUARDIAN_OPERATION }],
      parentClosePolicy: ParentClosePolicy.TERMINATE,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      state.yielded++;
      state.phase = `${w.old ?? '(none)'} → ${leader} under a pgha runbook: left to it`;
      return;
    }
    throw err;
  }
  // Routing and recording finish even if the guardian is stopped meanwhile.
  await CancellationScope.nonCancellable(async () => {
    try {
      state.phase = `routing every HAProxy to ${leader}`;
      let routed: RouteResult | undefined;
      let routeError: string | undefined;
      try {
        routed = await routeActs.guardianRoute({ inv, leader, old: w.old });
      } catch (err) {
        routeError =
          err instanceof ApplicationFailure || err instanceof Error ? causeMessage(err) : String(err);
      }
      const facts = factsOf(cluster, w, routed, routeError);
      state.phase = `recording ${w.old ?? '(none)'} → ${leader}`;
      try {
        await executeChild(failoverObserved, {
          workflowId: failoverObservedId(cluster, facts, w.observedAt),
          args: [facts],
          workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
          parentClosePolicy: ParentClosePolicy.ABANDON,
          typedSearchAttributes: [
            { key: PgCluster, value: cluster },
            { key: PgOperation, value: FAILOVER_OBSERVED_OPERATION },
            { key: PgNode, value: leader },
          ],
          memo: {
            summary: `failover ${w.old ?? '(none)'} → ${leader}${facts.timeline !== undefined ? `, timeline ${facts.timeline}` : ''}`,
          },
        });
        state.observed++;
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      }
      state.last = facts;
    } finally {
      await lock.signal(release);
    }
  });
}

function causeMessage(err: Error): string {
  let e: unknown = err;
  while (e instanceof Error && (e as { cause?: unknown }).cause instanceof Error)
    e = (e as { cause: Error }).cause;
  return e instanceof Error ? e.message : String(e);
}
