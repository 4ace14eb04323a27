/**
 * `npm run bench:major` — what the major upgrade (upgradeMajor, 17 → 18 with pg_upgrade --link)
 * costs the clients, on a lab cluster deployed at 17 (PGHA_LAB_INVENTORY, default
 * runbooks/clusters/lab17.yaml; it refuses, before anything, an inventory that is not a lab's, and
 * a cluster that is not on the inventory's major: make a fresh one with
 * `npx pgha lab -i FILE reset && npx pgha deploy --cluster FILE`).
 *
 * A pgbench database of BENCH_SCALE (default 100: ~1.5 GB) is made on the leader first (kept if
 * there); then the real runbook runs on a Temporal dev server of the bench's own with an
 * worker in a process of its own (workers/main.ts with the real activities, as users run it) while a writer commits one row per transaction through
 * HAProxy's write port (BENCH_RATE per second, default 100; one kept connection, reconnecting at
 * once after an error). Measured: write downtime — the longest time between two acknowledged
 * commits during the run (from the last commit before the stop to the first on the new leader) —
 * the wall time of the run, and the acknowledged writes missing on the leader afterwards. Last
 * line, exactly:
 *
 *   major_upgrade write_down_s=<n> wall_s=<n> lost=<n>
 */
import { join } from 'node:path';
import { createPatroniActivities } from '../activities/patroni';
import { createProxmoxFactory } from '../activities/proxmox';
import { inventoryInput } from '../clients/inventory-input';
import { resolveClusterSecrets } from '../runbooks/inventory';
import { memberNames, restApi } from '../runbooks/topology';
import { progress } from '../workflows/messages';
import type { StepProgress } from '../workflows/messages';
import type { UpgradeMajorInput, UpgradeMajorReport } from '../workflows/upgrade-major';
import { Writer, benchTemporal, labCluster, pgToolArgv, requireLabInventory, sleep } from './common';

const root = join(__dirname, '..');
const INVENTORY = process.env.PGHA_LAB_INVENTORY ?? join(root, 'runbooks/clusters/lab17.yaml');
const SCALE = Math.max(1, Number(process.env.BENCH_SCALE ?? 100));
const RATE = Math.max(10, Number(process.env.BENCH_RATE ?? 100));
const TO = process.env.BENCH_MAJOR_TO ?? '18';

async function main() {
  requireLabInventory('bench:major', 'stops the whole cluster and upgrades it to the next major', INVENTORY);
  const { input, inventory: inv } = await inventoryInput(INVENTORY);
  const secrets = await resolveClusterSecrets(inv);
  const patroni = createPatroniActivities();
  const proxmox = createProxmoxFactory();
  const host = await proxmox.get(inv.proxmox);
  const lab = labCluster(inv, secrets, patroni);

  const versions = await Promise.all(
    memberNames(inv).map(
      async (m) =>
        (await patroni.patroniGetPatroni({ target: restApi(inv, m), timeoutMs: 2000 })).body?.server_version,
    ),
  );
  if (!versions.every((v) => typeof v === 'number' && Math.floor(v / 10000) === inv.postgresql.major))
    throw new Error(
      `the cluster runs ${versions.join(', ')}, not PostgreSQL ${inv.postgresql.major} everywhere: ` +
        `make a fresh one (npx pgha lab -i ${INVENTORY} reset && npx pgha deploy --cluster ${INVENTORY})`,
    );
  let leader = await lab.settled(120_000);

  // The database: pgbench at BENCH_SCALE on the leader, once.
  const accounts = await lab.sqlOn(lab.ip(leader), inv.ports.postgresql, async (c) =>
    (await c.query<{ n: string | null }>("select to_regclass('pgbench_accounts')::text as n")).rows[0]!.n
      ? Number((await c.query<{ n: string }>('select count(*)::text as n from pgbench_accounts')).rows[0]!.n)
      : 0,
  );
  if (accounts !== SCALE * 100_000) {
    const t0 = Date.now();
    console.log(`pgbench -i -s ${SCALE} on ${leader} (~${(SCALE * 15) / 1000} GB)`);
    const node = inv.nodes.postgres.find((n) => n.hostname === leader)!;
    const r = await host.exec(
      node.vmid,
      pgToolArgv(inv, 'pgbench', ['-i', '-q', '-s', String(SCALE), 'postgres']),
      { timeoutMs: 3600_000 },
    );
    if (r.code !== 0) throw new Error(`pgbench -i: ${r.stderr}`);
    console.log(`pgbench -i: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    leader = await lab.settled(900_000);
  }
  const size = await lab.sqlOn(
    lab.ip(leader),
    inv.ports.postgresql,
    async (c) =>
      (await c.query<{ s: string }>('select pg_size_pretty(pg_database_size(current_database())) as s'))
        .rows[0]!.s,
  );
  console.log(`database postgres: ${size}; leader ${leader}`);

  const table = `bench_major_${Date.now()}`;
  await lab.sqlOn(lab.ip(leader), inv.ports.postgresql, (c) =>
    c.query(`create table ${table} (id bigint primary key)`),
  );
  const hap = inv.nodes.haproxy[0]!.ip;
  const writer = new Writer({
    conn: { host: hap, port: inv.ports.haproxyWrite, user: lab.user, password: lab.password },
    table,
    rate: RATE,
    idBase: 1,
    connectTimeoutMs: 2000,
  });

  const { env, worker, taskQueue } = await benchTemporal('bench-major', { workerProcess: true });
  let report: UpgradeMajorReport | undefined;
  let steps: StepProgress[] = [];
  let t0 = 0;
  let t1 = 0;
  try {
    writer.start();
    await sleep(2000);
    await worker.runUntil(async () => {
      t0 = Date.now();
      const args: UpgradeMajorInput = { inventory: input, to: TO };
      const handle = await env.client.workflow.start('upgradeMajor', {
        taskQueue,
        workflowId: `bench-major-${Date.now()}`,
        args: [args],
      });
      report = (await handle.result()) as UpgradeMajorReport;
      t1 = Date.now();
      steps = (await handle.query(progress)).steps;
    });
    await sleep(2000);
  } finally {
    await writer.stop();
    await env.teardown();
    proxmox.closeAll();
  }
  console.log(
    `upgradeMajor: ${report!.outcome} — ${report!.message}; pg_upgrade ${report!.pgUpgrade?.action} in ` +
      `${((report!.pgUpgrade?.tookMs ?? 0) / 1000).toFixed(1)} s; the runbook's own stop → leader up ${((report!.downMs ?? 0) / 1000).toFixed(1)} s`,
  );
  const acked = writer.attempts.filter((a) => a.ok);
  let gap = 0;
  let prev = t0;
  let gapFrom = t0;
  for (const a of acked) {
    if (a.end < t0 || a.end > t1) continue;
    if (a.end - prev > gap) [gap, gapFrom] = [a.end - prev, prev];
    prev = a.end;
  }
  // Where the time went: each step from the run's start (s), and the write gap among them.
  const s = (ms: number) => ((ms - t0) / 1000).toFixed(1).padStart(6);
  for (const st of steps.filter((x) => x.startedAt))
    console.log(
      `  ${s(Date.parse(st.startedAt!))} → ${st.endedAt ? s(Date.parse(st.endedAt)) : '     ?'}  ${st.name} (${st.status})`,
    );
  console.log(`  writes: last commit before the gap at ${s(gapFrom)}, first after it at ${s(gapFrom + gap)}`);
  if (report?.stop?.timings) console.log(`  stop: ${JSON.stringify(report.stop.timings)} (ms into the step)`);
  if (report?.routeNote) console.log(`  ${report.routeNote}`);
  if (report?.extensions?.length) console.log(`  extensions updated: ${JSON.stringify(report.extensions)}`);
  if (report?.backup) console.log(`  fresh backup: ${JSON.stringify(report.backup)}`);
  const failedAttempts = writer.attempts.filter((a) => !a.ok && a.start >= t0 && a.start <= t1).length;
  console.log(
    `writer: ${acked.length} commits acknowledged, ${failedAttempts} failed attempts during the run`,
  );
  const final = await lab.settled(300_000);
  const lost = await lab.missing(
    final,
    table,
    acked.map((a) => a.id),
  );
  console.log(
    `major_upgrade write_down_s=${(gap / 1000).toFixed(1)} wall_s=${((t1 - t0) / 1000).toFixed(1)} lost=${lost}`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:major: ${(err as Error).message}`);
    process.exit(1);
  },
);
