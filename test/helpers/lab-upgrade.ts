/**
 * What the PostgreSQL upgrade lab tests share (test/lab/upgrade-postgresql.test.ts, the fault cases
 * in test/lab/upgrade-faults.test.ts): the cluster asked directly — Patroni's REST API, SQL, the CTs
 * through lxc-attach, never through pgha — and one setup: the lab's secrets, a test server, a real
 * worker process, the cluster deployed if needed and put back on 18.4 with every replica in the read port.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'pg';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import type { Inventory } from '../../runbooks/schema';
import type { deployCluster } from '../../workflows/deploy-cluster';
import { inCt, sqlAs, MEMBER_STREAMING } from './lab-direct';
import type { Proc } from './local-common';
import { repoRoot, sleep, waitFor } from './local-common';
import { startTestServer, testCodecKey, uniqueId } from './temporal';
import { activityCalls, startWorkerProc, workerReady } from './worker-procs';

export const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');

export interface PatroniStatus {
  role: string;
  state: string;
  timeline?: number;
  server_version?: number;
  postmaster_start_time?: string;
  pause?: boolean;
}

/** The cluster of `inv` asked directly. */
export function labCluster(inv: Inventory) {
  const pg = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!;
  const members = () => inv.nodes.postgres.map((n) => n.hostname);
  const sql = <T>(host: string, port: number, fn: (c: Client) => Promise<T>) => sqlAs(inv, host, port, fn);
  const version = (m: string) =>
    sql(
      pg(m).ip,
      inv.ports.postgresql,
      async (c) => (await c.query<{ v: string }>('select version() as v')).rows[0]!.v,
    );
  const sh = (m: string, ...argv: string[]) => inCt(pg(m).vmid, argv).trim();

  async function patroni(member: string): Promise<PatroniStatus | null> {
    try {
      const r = await fetch(`http://${pg(member).ip}:${inv.ports.patroniRestApi}/patroni`, {
        signal: AbortSignal.timeout(2000),
      });
      return (await r.json()) as PatroniStatus;
    } catch {
      return null;
    }
  }
  async function leaderNow(): Promise<string> {
    for (const m of members()) {
      const s = await patroni(m);
      if (s && (s.role === 'master' || s.role === 'primary') && s.state === 'running') return m;
    }
    throw new Error('no running primary');
  }
  async function streamingReplicas(leader: string): Promise<string[]> {
    return sql(pg(leader).ip, inv.ports.postgresql, async (c) =>
      (
        await c.query<{ n: string }>(
          `select application_name as n from pg_stat_replication where ${MEMBER_STREAMING} order by 1`,
        )
      ).rows.map((r) => r.n),
    );
  }
  /** A running leader with every other member streaming from it; the leader. */
  async function healthy(timeoutMs = 180_000): Promise<string> {
    let leader = '';
    await waitFor('a leader and both replicas streaming', timeoutMs, async () => {
      try {
        leader = await leaderNow();
        return (await streamingReplicas(leader)).length === members().length - 1;
      } catch {
        return false;
      }
    });
    return leader;
  }
  const timeline = async (leader: string) =>
    sql(pg(leader).ip, inv.ports.postgresql, async (c) =>
      Number(
        (await c.query<{ t: string }>('select timeline_id as t from pg_control_checkpoint()')).rows[0]!.t,
      ),
    );
  async function startTimesNow(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const m of members()) {
      const s = await patroni(m);
      assert.ok(s?.postmaster_start_time, `${m} reports its postmaster start time`);
      out[m] = s.postmaster_start_time;
    }
    return out;
  }
  /** An interrupted earlier run may have left replicas drained in the read port: ready on every HAProxy. */
  function resetDrains(): void {
    for (const h of inv.nodes.haproxy) {
      for (const m of members()) {
        inCt(h.vmid, ['socat', 'stdio', 'unix-connect:/run/haproxy/admin.sock'], {
          stdin: `set server postgres_replicas/${m} state ready\n`,
        });
      }
    }
  }
  /** Every member back on 18.4 (an earlier run upgraded some): link back, restart all through patronictl. */
  async function backTo184(): Promise<void> {
    const on = await Promise.all(members().map(async (m) => (await patroni(m))?.server_version));
    if (on.every((v) => v === 180004)) return;
    for (const m of members()) {
      sh(m, 'ln', '-sfnT', '/usr/pgsql-18.4.0', '/usr/pgsql-18');
      sh(m, 'ldconfig');
    }
    const leader = await leaderNow();
    inCt(
      pg(leader).vmid,
      [
        `${inv.install.patroni.venv ?? '/opt/patroni'}/bin/patronictl`,
        '-c',
        '/etc/patroni/patroni.yml',
        'restart',
        inv.patroni.scope,
        '--force',
      ],
      { timeoutMs: 180_000 },
    );
    await waitFor('every member on 18.4', 180_000, async () =>
      (await Promise.all(members().map(async (m) => (await patroni(m))?.server_version))).every(
        (v) => v === 180004,
      ),
    );
    await healthy();
  }
  const venv = inv.install.patroni.venv ?? '/opt/patroni';
  const patronictl = (m: string, ...args: string[]) =>
    inCt(pg(m).vmid, [`${venv}/bin/patronictl`, '-c', `${inv.patroni.configDir}/patroni.yml`, ...args], {
      timeoutMs: 180_000,
    });
  const patroniVersion = async (m: string) =>
    ((await patroni(m)) as { patroni?: { version?: string } } | null)?.patroni?.version;
  /**
   * Every member back on Patroni `v` (an earlier run upgraded some): paused, each such member's venv
   * link back to its `v` venv (still there) and its Patroni restarted, resumed. PostgreSQL keeps running.
   */
  async function patroniBackTo(v: string): Promise<void> {
    const leader = await healthy();
    const behind: string[] = [];
    for (const m of members()) if ((await patroniVersion(m)) !== v) behind.push(m);
    if (!behind.length) return;
    patronictl(leader, 'pause', '--wait');
    try {
      for (const m of behind) {
        sh(m, 'ln', '-sfnT', `${venv}-${v}`, venv);
        sh(m, 'systemctl', 'restart', 'patroni');
      }
      await waitFor(`every member on Patroni ${v}`, 180_000, async () =>
        (await Promise.all(members().map(patroniVersion))).every((x) => x === v),
      );
    } finally {
      patronictl(leader, 'resume', '--wait');
    }
    await healthy();
  }
  return {
    pg,
    members,
    patroniVersion,
    patroniBackTo,
    sql,
    version,
    sh,
    patroni,
    leaderNow,
    streamingReplicas,
    healthy,
    timeline,
    startTimesNow,
    resetDrains,
    backTo184,
  };
}
export type LabCluster = ReturnType<typeof labCluster>;

/** Every distinct postmaster_start_time each member reports, polled every 100 ms. */
export class StartTimes {
  readonly seen = new Map<string, string[]>();
  private stopped = false;
  private loop?: Promise<void>;
  constructor(private readonly lab: LabCluster) {}
  start(): this {
    this.loop = (async () => {
      while (!this.stopped) {
        await Promise.all(
          this.lab.members().map(async (m) => {
            const t = (await this.lab.patroni(m))?.postmaster_start_time;
            if (!t) return;
            const list = this.seen.get(m) ?? [];
            if (list[list.length - 1] !== t) list.push(t);
            this.seen.set(m, list);
          }),
        );
        await sleep(100);
      }
    })();
    return this;
  }
  async stop(): Promise<Map<string, string[]>> {
    this.stopped = true;
    await this.loop;
    return this.seen;
  }
}

/**
 * The setup of an upgrade lab test file: the cluster deployed, healthy, and prepared (default: on
 * 18.4); a worker process. `inventory` defaults to LAB (the major upgrade's test uses lab17.yaml).
 */
export async function upgradeLabSetup(
  prefix: string,
  /** fresh: CTs just made from the base image (no HAProxy yet whose drains to undo). */
  opts: { inventory?: string; fresh?: boolean; prepare?: (lab: LabCluster) => Promise<void> } = {},
) {
  const file = opts.inventory ?? LAB;
  execFileSync(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'clients/pgha.ts'), 'secrets', 'init', '--cluster', file],
    { cwd: repoRoot, timeout: 60_000 },
  );
  const { input, inventory: inv } = await inventoryInput(file);
  const lab = labCluster(inv);
  if (!opts.fresh) lab.resetDrains();
  const env: TestWorkflowEnvironment = await startTestServer();
  const taskQueue = uniqueId(prefix);
  const countDir = mkdtempSync(join(tmpdir(), 'pgha-count-'));
  const workers: Proc[] = [];
  const startWorker = (name: string): Proc => {
    const w = startWorkerProc({ name, address: env.address, taskQueue, countDir });
    workers.push(w);
    return w;
  };
  const worker = startWorker('worker-1');
  await workerReady(worker, 300_000);
  const d = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'deploy',
    suffix: uniqueId('ensure'),
    taskQueue,
  });
  await d.result();
  await lab.healthy();
  await (opts.prepare ? opts.prepare(lab) : lab.backTo184());

  /** The pgha CLI against this test's server and task queue. */
  const pgha = (...args: string[]): { status: number | null; out: string } => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'clients/pgha.ts'), ...args], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 300_000,
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: env.address,
        TEMPORAL_NAMESPACE: 'default',
        PGHA_TASK_QUEUE: taskQueue,
        PGHA_CODEC_KEY: testCodecKey.toString('base64'),
      },
    });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  };
  return {
    env,
    inv,
    input,
    lab,
    taskQueue,
    countDir,
    worker,
    workers,
    startWorker,
    pgha,
    count: (activity: string) => activityCalls(countDir, activity),
    async teardown(): Promise<void> {
      for (const w of workers) await w.stop();
      await env.teardown();
    },
  };
}
export type UpgradeLab = Awaited<ReturnType<typeof upgradeLabSetup>>;
