/**
 * Patroni's DCS failsafe mode on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml):
 * etcd's quorum lost must not take writes down.
 *
 *  1. The cluster is deployed (deployCluster renders `failsafe_mode: true` for Patroni >= 3.0.0); a
 *     cluster deployed before that gets it through applyConfig (the dynamic DCS key), as an
 *     operator would: `pgha config set failsafe_mode=true`.
 *  2. A writer commits through HAProxy's write port (one connection, reconnecting on error) while 2
 *     of the 3 etcd CTs are hard-stopped for 60 s (`pgha lab fault stop-ct`), then started again.
 *  3. Checked from outside pgha: acknowledged commits in every 5 s window before, during and after
 *     the outage (none empty); the leader's `GET /primary` (HAProxy's write check) 200 throughout;
 *     the leader unchanged, on the same timeline; every acknowledged row on the leader and on each
 *     replica once etcd is back (0 lost); etcd healthy again and both replicas streaming.
 * The writes/s before, during and after and the longest gap between two acknowledged commits are
 * reported as diagnostics (measured here, not asserted beyond "no empty window").
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import type { Inventory } from '../../runbooks/schema';
import { etcdEndpoints, restApi, sqlConn } from '../../runbooks/topology';
import type { deployCluster } from '../../workflows/deploy-cluster';
import type { applyConfig } from '../../workflows/rolling-restart';
import { sqlAs, LabWriter, MEMBER_STREAMING } from '../helpers/lab-direct';
import { labNotUpReason } from '../../lab/testing';
import type { Proc } from '../helpers/local-common';
import { repoRoot, sleep, waitFor } from '../helpers/local-common';
import { startWorkerProc, workerReady } from '../helpers/worker-procs';
import { startTestServer, uniqueId } from '../helpers/temporal';
import { notDryRun } from '../../workflows/dry-run';

const skip = labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
const OUTAGE_MS = 60_000;
const WINDOW_MS = 5_000;

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
let taskQueue: string;
const workers: Proc[] = [];

/**
 * `pgha lab ...` without blocking the event loop: the writer and the /primary poller must keep
 * running while a CT stops or starts (a synchronous call froze them for the CT's stop time).
 */
async function pghaLab(...args: string[]): Promise<void> {
  await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'clients/pgha.ts'), 'lab', '--inventory', LAB, ...args],
    { cwd: repoRoot, encoding: 'utf8', timeout: 300_000 },
  );
}

function pghaCli(...args: string[]): string {
  return execFileSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'clients/pgha.ts'), ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 300_000,
  });
}

interface PatroniStatus {
  role?: string;
  state?: string;
  timeline?: number;
  failsafe_mode_is_active?: boolean;
}

async function patroni(
  member: string,
  path = 'patroni',
): Promise<{ code: number; body: PatroniStatus | null }> {
  try {
    const r = await fetch(`${restApi(inv, member).url}/${path}`, { signal: AbortSignal.timeout(2000) });
    return { code: r.status, body: (await r.json().catch(() => null)) as PatroniStatus | null };
  } catch {
    return { code: 0, body: null };
  }
}

async function leaderNow(): Promise<{ name: string; timeline: number | undefined }> {
  for (const n of inv.nodes.postgres) {
    const { body } = await patroni(n.hostname);
    if ((body?.role === 'master' || body?.role === 'primary') && body.state === 'running') {
      return { name: n.hostname, timeline: body.timeline };
    }
  }
  throw new Error('no running primary');
}

async function streaming(leader: string): Promise<number> {
  const c = sqlConn(inv, leader);
  return sqlAs(inv, c.host, inv.ports.postgresql, async (cl) =>
    Number(
      (
        await cl.query<{ n: string }>(
          `select count(*) as n from pg_stat_replication where ${MEMBER_STREAMING}`,
        )
      ).rows[0]!.n,
    ),
  );
}

/** Every etcd member's /health says true (its own HTTP endpoint; asked without blocking the writer). */
async function etcdHealthy(): Promise<boolean> {
  const each = await Promise.all(
    etcdEndpoints(inv).map(async (url) => {
      try {
        const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(3000) });
        return ((await r.json()) as { health?: string }).health === 'true';
      } catch {
        return false;
      }
    }),
  );
  return each.every(Boolean);
}

/** The leader's GET /primary (HAProxy's write check), polled every 250 ms. */
class PrimaryCheck {
  readonly codes: { at: number; code: number; failsafe: boolean }[] = [];
  private stopped = false;
  private loop?: Promise<void>;
  constructor(private readonly member: string) {}
  start(): this {
    this.loop = (async () => {
      while (!this.stopped) {
        const r = await patroni(this.member, 'primary');
        this.codes.push({ at: Date.now(), code: r.code, failsafe: r.body?.failsafe_mode_is_active === true });
        await sleep(250);
      }
    })();
    return this;
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

before(async () => {
  if (skip) return;
  pghaCli('secrets', 'init', '--cluster', LAB);
  ({ input, inventory: inv } = await inventoryInput(LAB));
  env = await startTestServer();
  taskQueue = uniqueId('failsafe');
  const w = startWorkerProc({
    name: 'worker-failsafe',
    address: env.address,
    taskQueue,
    countDir: mkdtempSync(join(tmpdir(), 'pgha-count-')),
  });
  workers.push(w);
  await workerReady(w);
  const d = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'deploy',
    suffix: uniqueId('ensure'),
    taskQueue,
  });
  const v = notDryRun(await d.result()).verdict;
  assert.ok(v.status === 'healthy', JSON.stringify(v));
});

after(async () => {
  for (const w of workers) await w.stop();
  await env?.teardown();
});

void test(
  'failsafe mode: 2 of 3 etcd CTs stopped for 60 s, writes through HAProxy keep being acknowledged, 0 lost, leader unchanged',
  { skip, timeout: 600_000 },
  async (t) => {
    const leader = await leaderNow();
    // A cluster bootstrapped before pgha rendered failsafe_mode gets it as a dynamic DCS key.
    const cfg = (await (await fetch(`${restApi(inv, leader.name).url}/config`)).json()) as Record<
      string,
      unknown
    >;
    if (cfg.failsafe_mode !== true) {
      const h = await startRunbook<typeof applyConfig>(env.client, {
        workflow: 'applyConfig',
        args: [{ inventory: input, set: { failsafe_mode: true }, restart: 'none' }],
        cluster: inv.cluster,
        operation: 'config',
        suffix: uniqueId('failsafe'),
        taskQueue,
      });
      await h.result();
    }
    const now = (await (await fetch(`${restApi(inv, leader.name).url}/config`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(now.failsafe_mode, true, 'failsafe_mode is on in the DCS');
    // Patroni writes the /failsafe key (the members the leader must reach) on its next loop.
    await waitFor('the /failsafe key names every member', 60_000, async () => {
      const r = await patroni(leader.name, 'failsafe');
      return r.code === 200 && inv.nodes.postgres.every((n) => n.hostname in (r.body as object));
    });

    const writer = await new LabWriter(
      inv,
      `failsafe_writes_${Date.now()}`,
      inv.nodes.haproxy[0]!.ip,
    ).start();
    const check = new PrimaryCheck(leader.name).start();
    const t0 = Date.now();
    await sleep(15_000);

    const stopped = inv.nodes.etcd.slice(0, 2);
    const down = Date.now();
    await Promise.all(stopped.map((n) => pghaLab('fault', 'stop-ct', String(n.vmid))));
    t.diagnostic(`etcd CTs ${stopped.map((n) => n.vmid).join(', ')} stopped`);
    await sleep(OUTAGE_MS - (Date.now() - down));

    const up = Date.now();
    await pghaLab('up'); // starts the stopped CTs (etcd is enabled on them)
    await waitFor('etcd healthy again', 120_000, etcdHealthy);
    const healthyAt = Date.now();
    await sleep(15_000);
    const end = Date.now();
    await writer.stop();
    await check.stop();
    const during = check.codes.filter((c) => c.at >= down && c.at < up);
    const failsafeSeen = check.codes.filter((c) => c.failsafe);
    const sawFailsafe = failsafeSeen.length > 0;
    let checkGap = 0;
    for (let i = 1; i < check.codes.length; i++)
      checkGap = Math.max(checkGap, check.codes[i]!.at - check.codes[i - 1]!.at);

    // Writes/s and gaps, before / during / after (diagnostics).
    const rate = (a: number, b: number) => ((writer.count(a, b) * 1000) / (b - a)).toFixed(1);
    t.diagnostic(
      `writes/s before=${rate(t0, down)} during=${rate(down, up)} after=${rate(healthyAt, end)}; ` +
        `longest gap before=${writer.longestGap(t0, down)} ms during=${writer.longestGap(down, up)} ms ` +
        `recovering=${writer.longestGap(up, healthyAt)} ms after=${writer.longestGap(healthyAt, end)} ms; ` +
        `write errors=${writer.errors}; GET /primary checks during the outage=${during.length} ` +
        `(longest between two: ${checkGap} ms); failsafe_mode_is_active ` +
        (sawFailsafe
          ? `from +${failsafeSeen[0]!.at - down} ms to +${failsafeSeen.at(-1)!.at - down} ms after etcd stopped`
          : 'never seen'),
    );
    // The check below means something only if the poller kept asking through the outage.
    assert.ok(checkGap < 5000, `the /primary poller asked at least every 5 s (longest ${checkGap} ms)`);

    const empty: string[] = [];
    for (let w = t0; w + WINDOW_MS <= end; w += WINDOW_MS) {
      if (writer.count(w, w + WINDOW_MS) === 0) empty.push(`[${w - down} ms, +5 s) after etcd stopped`);
    }
    assert.deepEqual(empty, [], 'every 5 s window has acknowledged commits');
    const not200 = check.codes.filter((c) => c.code !== 200).map((c) => `${c.at - down} ms: ${c.code}`);
    assert.deepEqual(not200, [], `the leader's GET /primary stays 200 (HAProxy routes writes to it)`);
    assert.ok(sawFailsafe, 'Patroni reported failsafe_mode_is_active during the outage');

    const after = await leaderNow();
    assert.equal(after.name, leader.name, 'the leader is unchanged');
    assert.equal(after.timeline, leader.timeline, 'no promotion: same timeline');
    await waitFor('both replicas streaming again', 120_000, async () => (await streaming(leader.name)) === 2);

    // 0 acknowledged rows lost: every acknowledged id on the leader and on each replica.
    const ids = writer.acked.map((a) => a.id);
    for (const n of inv.nodes.postgres) {
      await waitFor(`${n.hostname} has every acknowledged row`, 60_000, async () => {
        const c = sqlConn(inv, n.hostname);
        const missing = await sqlAs(inv, c.host, inv.ports.postgresql, async (cl) =>
          Number(
            (
              await cl.query<{ n: string }>(
                `select count(*) as n from unnest($1::bigint[]) id where id not in (select id from ${writer.table})`,
                [ids],
              )
            ).rows[0]!.n,
          ),
        );
        return missing === 0;
      });
    }
    assert.ok(await etcdHealthy(), 'etcd: every member healthy');
  },
);
