/**
 * `npm run bench:failover [-- --runs N]` — an unplanned failover behind HAProxy, on a deployed lab
 * cluster (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml). It hard-stops CTs and changes
 * Patroni's timings: it refuses, before anything, an inventory that is not a lab's.
 *
 * Four series, N runs each (--runs, default 3):
 *
 *   seed                  Patroni's timings ttl 60 / loop_wait 10 / retry_timeout 20, no guardian;
 *   seed_guarded          the same, with the cluster's guardian (workflows/guardian.ts) running;
 *   recommended           ttl 20 / loop_wait 5 / retry_timeout 7 (runbooks/timing.ts), no guardian;
 *   recommended_guarded   the same, with the guardian.
 *
 * The timings are switched on the running cluster with the applyConfig runbook (Patroni's dynamic
 * configuration: PATCH /config for ttl, loop_wait, retry_timeout; no restart), then awaited until
 * the leader key's etcd lease is granted with the new ttl (Patroni re-grants its lease when its ttl
 * changes). HAProxy is left as deployed. The runbooks (applyConfig, clusterGuardian) run on a
 * Temporal dev server of the bench's own with an in-process worker and the real activities.
 *
 * One run: a writer commits a row per transaction through the first HAProxy's write port
 * (BENCH_RATE per second, default 100; one kept connection, reconnecting at once after an error,
 * connect timeout haproxy.writeHold + 2 s); the leader's CT is hard-stopped (as `pgha lab fault
 * stop-ct`); measured from the stop: the leader key deleted (its lease expired, an etcd watch), a
 * new holder, the new leader's /primary 200 and pg_is_in_recovery() = false (polled every 50 ms),
 * the first acknowledged commit on the new leader (the failover time), the failed write attempts
 * and those that reached a read-only server, and with the guardian the moment it routed HAProxy.
 * Then the CT is started again and the run ends when every member streams from the leader
 * (bounded); the acknowledged ids of the run missing on the leader then are lost.
 *
 * A line per run; the timings put back to the inventory's at the end (whatever happened), the
 * guardian stopped, a stopped CT started. Last line, exactly (medians in seconds):
 *
 *   failover_s seed=<n> seed_guarded=<n> recommended=<n> recommended_guarded=<n> lost=<n>
 */
import { join } from 'node:path';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { Client as TemporalClient } from '@temporalio/client';
import { createEtcdActivities, watchEtcdKey } from '../activities/etcd';
import type { EtcdKeyEvent } from '../activities/etcd';
import { leaderKey } from '../activities/guardian';
import { createPatroniActivities } from '../activities/patroni';
import { writeHoldMs } from '../activities/render';
import { failoverRecords, startGuardian } from '../clients/commands/guard';
import { inventoryInput } from '../clients/inventory-input';
import { ctState, start as startCt } from '../lab/containers';
import { fault } from '../lab/index';
import { resolveClusterSecrets } from '../runbooks/inventory';
import { TIMING_PROFILES } from '../runbooks/timing';
import type { PatroniTiming } from '../runbooks/timing';
import { etcdEndpoints, findNode, memberByIp, memberNames, restApi } from '../runbooks/topology';
import { guardianState, guardianWorkflowId } from '../workflows/guardian';
import type { FailoverFacts } from '../workflows/guardian';
import type { ApplyConfigInput } from '../workflows/rolling-restart';
import {
  Writer,
  benchTemporal,
  bounded,
  labCluster,
  median,
  requireLabInventory,
  sleep,
  watchMember,
} from './common';

const root = join(__dirname, '..');
const INVENTORY = process.env.PGHA_LAB_INVENTORY ?? join(root, 'runbooks/clusters/lab.yaml');
const RATE = Math.max(20, Number(process.env.BENCH_RATE ?? 100));
const TABLE = 'pgha_bench_failover';
/** recommended first: a timing switch that does not take shows at once, and seed last is the lab's own. */
const SERIES = [
  { name: 'recommended', timing: 'recommended', guarded: false },
  { name: 'recommended_guarded', timing: 'recommended', guarded: true },
  { name: 'seed', timing: 'seed', guarded: false },
  { name: 'seed_guarded', timing: 'seed', guarded: true },
] as const;
type SeriesName = (typeof SERIES)[number]['name'];

/** `--runs N`: 1–20, default 3. */
function runsArg(argv: string[]): number {
  const i = argv.indexOf('--runs');
  if (i < 0) return 3;
  const v = argv[i + 1];
  const n = Number(v);
  if (!v || !Number.isInteger(n) || n < 1 || n > 20)
    throw new Error(`--runs: expected a whole number of runs per series from 1 to 20, got ${v ?? 'nothing'}`);
  return n;
}

interface Run {
  series: SeriesName;
  n: number;
  from: string;
  to: string;
  /** Seconds after the stop. */
  failoverS: number;
  failed: number;
  toReplica: number;
  keyGoneS?: number;
  newHolderS?: number;
  primary200S?: number;
  writableS?: number;
  guardianRoutedS?: number;
  routingLagS?: number;
  lost: number;
  backS: number;
}

const s1 = (ms: number | undefined, t0: number) => (ms === undefined ? undefined : (ms - t0) / 1000);
const f1 = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(1));

async function main() {
  requireLabInventory(
    'bench:failover',
    "hard-stops the leader's CT and changes Patroni's timings",
    INVENTORY,
  );
  const runs = runsArg(process.argv.slice(2));
  if (process.getuid?.() !== 0)
    throw new Error('bench:failover stops and starts lab CTs (LXC): run it as root');
  const { input, inventory: inv } = await inventoryInput(INVENTORY);
  const secrets = await resolveClusterSecrets(inv);
  const patroni = createPatroniActivities();
  const etcd = createEtcdActivities();
  const lc = labCluster(inv, secrets, patroni);
  const own: PatroniTiming = {
    ttl: inv.patroni.ttl,
    loopWait: inv.patroni.loopWait,
    retryTimeout: inv.patroni.retryTimeout,
  };
  const nameOf = (addr: string | undefined) => memberByIp(inv, addr) ?? addr;
  const hp = inv.nodes.haproxy[0]!;
  const vmidOf = (m: string) => findNode(inv, 'postgres', m).vmid;

  const leaderLease = () =>
    etcd.etcdPatroniLeaderLease({
      endpoints: etcdEndpoints(inv),
      namespace: inv.patroni.namespace,
      scope: inv.patroni.scope,
    });

  const { env, worker, taskQueue } = await benchTemporal('bench-failover');
  const client: TemporalClient = env.client;
  const guardian = () => client.workflow.getHandle(guardianWorkflowId(inv.cluster));
  const stopGuardian = async () => {
    try {
      const d = await guardian().describe();
      if (d.status.name !== 'RUNNING') return;
      await guardian().cancel();
      await guardian().result();
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
  };
  /** Started (a running one is kept) and watching the leader we know. */
  const guardianOn = async (leader: string) => {
    await startGuardian(client, inv.cluster, { inventory: input }, { taskQueue });
    await bounded(`the guardian knows ${leader}`, 120_000, async () =>
      (await guardian().query(guardianState)).leader === leader ? true : undefined,
    );
  };

  /** Patroni's timings through the applyConfig runbook; in force once the leader's lease has the new ttl. */
  let current: PatroniTiming | undefined;
  const setTiming = async (t: PatroniTiming, why: string) => {
    const leader = await lc.settled(300_000);
    const cfg =
      (await patroni.patroniGetConfig({ target: restApi(inv, leader), timeoutMs: 3000 })).body ?? {};
    const same = cfg.ttl === t.ttl && cfg.loop_wait === t.loopWait && cfg.retry_timeout === t.retryTimeout;
    if (!same) {
      const args: ApplyConfigInput = {
        inventory: input,
        set: { ttl: t.ttl, loop_wait: t.loopWait, retry_timeout: t.retryTimeout },
        restart: 'none',
      };
      const h = await client.workflow.start('applyConfig', {
        taskQueue,
        workflowId: `bench-failover-applyConfig-${Date.now()}`,
        args: [args],
      });
      await h.result();
    }
    const lease = await bounded(
      `the leader key's lease granted with ttl ${t.ttl}`,
      (Math.max(t.loopWait, current?.loopWait ?? own.loopWait) * 3 + 30) * 1000,
      async () => {
        const l = await leaderLease();
        return l && l.grantedTtl === t.ttl ? l : undefined;
      },
      500,
    );
    current = t;
    console.log(
      `timings ${why}: ttl ${t.ttl} s, loop_wait ${t.loopWait} s, retry_timeout ${t.retryTimeout} s ` +
        `(${same ? 'already in the DCS' : 'applyConfig'}; leader ${lease.value}'s lease granted ${lease.grantedTtl} s)`,
    );
  };

  let idBase = 1;
  let stopped: string | undefined;
  const results: Run[] = [];

  const oneRun = async (series: (typeof SERIES)[number], n: number): Promise<Run> => {
    const from = await lc.settled(300_000);
    if (series.guarded) await guardianOn(from);
    const writer = new Writer({
      conn: { host: hp.ip, port: inv.ports.haproxyWrite, user: lc.user, password: lc.password },
      table: TABLE,
      rate: RATE,
      idBase,
      connectTimeoutMs: writeHoldMs(inv) + 2000,
    });
    const keyEvents: EtcdKeyEvent[] = [];
    const keyWatch = await watchEtcdKey(
      etcdEndpoints(inv),
      leaderKey(inv),
      (e) => keyEvents.push(e),
      () => undefined,
    );
    const replicas = memberNames(inv).filter((m) => m !== from);
    const watches = new Map(replicas.map((m) => [m, watchMember(inv, lc, m, 50)]));
    let cleaned = false;
    const cleanup = async () => {
      if (cleaned) return;
      cleaned = true;
      await writer.stop();
      for (const w of watches.values()) await w.done();
      await keyWatch.close();
    };
    writer.start();
    let t0 = 0;
    let to = '';
    try {
      await bounded(`commits on ${from} through ${hp.hostname}`, 30_000, async () =>
        writer.attempts.filter((a) => a.ok && nameOf(a.server) === from).length >= RATE ? true : undefined,
      );
      t0 = Date.now();
      stopped = from;
      fault.stopCt(vmidOf(from), { inventory: INVENTORY });
      const first = await bounded(
        `a commit on a new leader after ${from}'s CT stopped`,
        ((current?.ttl ?? own.ttl) + 120) * 1000,
        async () => writer.attempts.find((a) => a.ok && a.start >= t0 && nameOf(a.server) !== from),
        50,
      );
      to = nameOf(first.server)!;
      await sleep(1000);
      await cleanup();
      const win = writer.attempts.filter((a) => a.start >= t0 && a.end <= first.end);
      const seen = watches.get(to)?.seen ?? {};
      let routed: FailoverFacts | undefined;
      if (series.guarded) {
        routed = await bounded(
          `the guardian's record of ${from} → ${to}`,
          60_000,
          async () =>
            (await failoverRecords(client, inv.cluster, 5)).find(
              (f) => f.newLeader === to && Date.parse(f.newHolderAt) >= t0,
            ),
          1000,
        ).catch((err: unknown) => {
          console.log(`  (no guardian record: ${(err as Error).message})`);
          return undefined;
        });
      }
      // Back: the CT started, every member streaming from the leader; then what the run lost.
      const b0 = Date.now();
      startCt(vmidOf(from));
      const leader = await lc.settled(600_000);
      stopped = undefined;
      const acked = writer.attempts.filter((a) => a.ok).map((a) => a.id);
      const lost = await lc.missing(leader, TABLE, acked);
      idBase = writer.nextIdBase;
      return {
        series: series.name,
        n,
        from,
        to,
        failoverS: (first.end - t0) / 1000,
        failed: win.filter((a) => !a.ok).length,
        toReplica: win.filter((a) => a.replica).length,
        keyGoneS: s1(keyEvents.find((e) => e.value === null)?.at, t0),
        newHolderS: s1(keyEvents.find((e) => e.value !== null && e.value !== from)?.at, t0),
        primary200S: s1(seen.primary200, t0),
        writableS: s1(seen.writable, t0),
        guardianRoutedS: routed?.routedAt ? s1(Date.parse(routed.routedAt), t0) : undefined,
        routingLagS: seen.writable !== undefined ? (first.end - seen.writable) / 1000 : undefined,
        lost,
        backS: Math.round((Date.now() - b0) / 1000),
      };
    } finally {
      await cleanup();
    }
  };

  let failure: unknown;
  try {
    await worker.runUntil(async () => {
      try {
        const first = await lc.settled(300_000);
        await lc.sqlOn(lc.ip(first), inv.ports.postgresql, (c) =>
          c.query(`drop table if exists ${TABLE}; create table ${TABLE} (id bigint primary key)`),
        );
        for (const series of SERIES) {
          if (!series.guarded) await stopGuardian();
          await setTiming(TIMING_PROFILES[series.timing], series.timing);
          for (let n = 1; n <= runs; n++) {
            const r = await oneRun(series, n);
            results.push(r);
            console.log(
              `${r.series} ${r.n}/${runs} ${r.from}→${r.to}: failover ${f1(r.failoverS)} s (stop → first commit on ${r.to}); ` +
                `failed attempts ${r.failed}, reached a read-only server ${r.toReplica}; ` +
                `key deleted ${f1(r.keyGoneS)} s, new holder ${f1(r.newHolderS)} s, /primary 200 ${f1(r.primary200S)} s, ` +
                `writable ${f1(r.writableS)} s, routing lag ${f1(r.routingLagS)} s` +
                `${series.guarded ? `, guardian routed ${f1(r.guardianRoutedS)} s` : ''}; lost ${r.lost}; healthy again in ${r.backS} s`,
            );
          }
        }
      } catch (err) {
        failure = err;
      } finally {
        // Put everything back: the CT, the guardian off, the inventory's timings.
        try {
          if (stopped && ctState(vmidOf(stopped)) !== 'running') startCt(vmidOf(stopped));
          await stopGuardian();
          await setTiming(own, 'put back to the inventory');
        } catch (err) {
          console.log(`PUTTING THE CLUSTER BACK FAILED: ${(err as Error).message}`);
          failure ??= err;
        }
      }
    });
  } finally {
    await env.teardown();
  }
  if (failure) throw failure;

  const by = (s: SeriesName) => results.filter((r) => r.series === s);
  const med = (s: SeriesName) => (median(by(s).map((r) => Math.round(r.failoverS * 1000))) / 1000).toFixed(1);
  const medOf = (xs: (number | undefined)[]) => {
    const v = xs.filter((x): x is number => x !== undefined).map((x) => Math.round(x * 1000));
    return v.length ? (median(v) / 1000).toFixed(1) : '-';
  };
  console.log('');
  console.log(
    '| series | median failover (s) | runs (s) | failed attempts | reached a read-only server | key deleted | /primary 200 | writable | routing lag | lost |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const s of SERIES) {
    const r = by(s.name);
    console.log(
      `| ${s.name} | ${med(s.name)} | ${r.map((x) => f1(x.failoverS)).join(' ')} | ${r.reduce((a, x) => a + x.failed, 0)} | ` +
        `${r.reduce((a, x) => a + x.toReplica, 0)} | ${medOf(r.map((x) => x.keyGoneS))} | ${medOf(r.map((x) => x.primary200S))} | ` +
        `${medOf(r.map((x) => x.writableS))} | ${medOf(r.map((x) => x.routingLagS))} | ${r.reduce((a, x) => a + x.lost, 0)} |`,
    );
  }
  console.log(
    `failover_s seed=${med('seed')} seed_guarded=${med('seed_guarded')} recommended=${med('recommended')} ` +
      `recommended_guarded=${med('recommended_guarded')} lost=${results.reduce((a, r) => a + r.lost, 0)}`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:failover: ${(err as Error).message}`);
    process.exit(1);
  },
);
