/**
 * `pgha doctor` on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml): each check
 * the seed's Troubleshooting section names, broken on the live cluster without a restart, fails
 * naming the member; repaired, it passes. All faults at once (one doctor run sees them all), each
 * on its own member so the findings cannot be confused:
 *   etcd-ports            etcd stopped on the last etcd member (systemctl stop etcd)
 *   patroni-dcs           replica A cannot route to any etcd member (ip route add unreachable ...)
 *   data-dir              replica B's data directory chmod 0755
 *   pg-hba-replication    replica B's pg_hba.conf without its `host replication` lines, reloaded
 *   haproxy-roles         replica B in maintenance in the first HAProxy's read backend (runtime API)
 *   patroni-timing        retry_timeout 30 in the DCS (PATCH /config; 10 + 2 × 30 > ttl 60)
 * Faults are made and undone from outside pgha (lxc-attach, SQL, Patroni's REST API, HAProxy's
 * runtime API straight through LXC); `after` undoes any left behind. The CLI's exit code is checked
 * against the report once.
 * A second test: versions flags Patroni
 * 3.3.0 under PostgreSQL 18; timeline fails with a replica promoted by hand under pause, passes after
 * POST /reinitialize; replication-settings fails with the leader restarted at max_wal_senders = what
 * streams now, passes after the value is back and the leader restarted again. clock-skew cannot be
 * broken honestly (LXC CTs share the host kernel's clock): it must pass here; its logic against
 * skewed readings is in test/unit/doctor.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import { doctorFromInventory } from '../../clients/commands/doctor';
import { doctorExitCode, type DoctorReport } from '../../activities/doctor';
import { HAPROXY_READ_BACKEND } from '../../activities/render/haproxy';
import type { Inventory } from '../../runbooks/schema';
import { restApi } from '../../runbooks/topology';
import type { deployCluster } from '../../workflows/deploy-cluster';
import { inCt, leaderDirect, sqlAs, timelineOf, waitHealthyDirect, withRuntime } from '../helpers/lab-direct';
import { startWorkerProc, workerReady } from '../helpers/worker-procs';
import { labNotUpReason } from '../../lab/testing';
import type { Proc } from '../helpers/local-common';
import { repoRoot, sleep, waitFor } from '../helpers/local-common';
import { startTestServer, uniqueId } from '../helpers/temporal';
import { notDryRun } from '../../workflows/dry-run';

const skip = labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
const BROKEN = [
  'etcd-ports',
  'patroni-dcs',
  'data-dir',
  'pg-hba-replication',
  'haproxy-roles',
  'patroni-timing',
];

let env: TestWorkflowEnvironment;
let inv: Inventory;
const workers: Proc[] = [];
/** Undo steps of the faults made so far, run in `after` if the test did not undo them. */
const undo = new Map<string, () => Promise<unknown>>();

function pghaCli(...args: string[]): { code: number; stdout: string } {
  try {
    const stdout = execFileSync(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'clients/pgha.ts'), ...args],
      {
        cwd: repoRoot,
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    return { code: 0, stdout };
  } catch (err) {
    const e = err as { status?: number; stdout?: string };
    if (typeof e.status !== 'number') throw err;
    return { code: e.status, stdout: e.stdout ?? '' };
  }
}

const secret = (ref: string) => readFileSync(ref.replace(/^file:/, ''), 'utf8').trim();

/** An authenticated call to a member's Patroni REST API (as an operator's curl), its status checked. */
async function rest(method: 'PATCH' | 'POST', member: string, path: string, body: object, ok = [200]) {
  const auth = Buffer.from(`${inv.patroni.restApiUsername}:${secret(inv.secrets.restApiPassword)}`).toString(
    'base64',
  );
  const r = await fetch(`${restApi(inv, member).url}${path}`, {
    method,
    headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  assert.ok(
    ok.includes(r.status),
    `${method} ${path} ${JSON.stringify(body)} on ${member}: ${r.status} ${await r.text()}`,
  );
}

const patchConfig = (leader: string, body: Record<string, unknown>) => rest('PATCH', leader, '/config', body);

const statusOf = (r: DoctorReport, id: string) => r.checks.find((c) => c.id === id)!;

/** Doctor again and again (bounded) until `done` says so; the last report. */
async function doctorUntil(done: (r: DoctorReport) => boolean, timeoutMs: number): Promise<DoctorReport> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await doctorFromInventory(inv);
    if (done(r)) return r;
    if (Date.now() > deadline) return r;
    await sleep(1000);
  }
}

before(async () => {
  if (skip) return;
  execFileSync(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'clients/pgha.ts'), 'secrets', 'init', '--cluster', LAB],
    {
      cwd: repoRoot,
    },
  );
  const loaded = await inventoryInput(LAB);
  inv = loaded.inventory;
  env = await startTestServer();
  const taskQueue = uniqueId('doctor');
  const w = startWorkerProc({
    name: 'worker-doctor',
    address: env.address,
    taskQueue,
    countDir: mkdtempSync(join(tmpdir(), 'pgha-count-')),
  });
  workers.push(w);
  await workerReady(w);
  const d = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: loaded.input }],
    cluster: inv.cluster,
    operation: 'deploy',
    suffix: uniqueId('ensure'),
    taskQueue,
  });
  const v = notDryRun(await d.result()).verdict;
  assert.ok(v.status === 'healthy', JSON.stringify(v));
});

after(async () => {
  for (const [what, fn] of undo)
    await fn().catch((err: unknown) => console.error(`undo ${what}: ${String(err)}`));
  for (const w of workers) await w.stop();
  await env?.teardown();
});

void test(
  'doctor: six faults on the live cluster fail their checks naming the member; repaired, every one passes again',
  { skip, timeout: 240_000 },
  async (t) => {
    const leader = await waitHealthyDirect(inv, 60_000);
    const [a, b] = inv.nodes.postgres.filter((n) => n.hostname !== leader);
    const etcd = inv.nodes.etcd.at(-1)!;
    const dataDir = inv.postgresql.dataDir;

    // Healthy: the checks about to be broken pass, and the CLI's exit code is the report's.
    const cli = pghaCli('doctor', '--cluster', LAB, '--json');
    const before0 = JSON.parse(cli.stdout) as DoctorReport;
    for (const id of BROKEN)
      assert.equal(
        statusOf(before0, id).status,
        'pass',
        `${id} before: ${JSON.stringify(statusOf(before0, id))}`,
      );
    assert.equal(cli.code, doctorExitCode(before0));

    // Break.
    const t0 = Date.now();
    inCt(etcd.vmid, ['systemctl', 'stop', 'etcd']);
    undo.set('etcd', async () => inCt(etcd.vmid, ['systemctl', 'start', '--no-block', 'etcd']));
    for (const e of inv.nodes.etcd) inCt(a!.vmid, ['ip', 'route', 'add', 'unreachable', `${e.ip}/32`]);
    undo.set('routes', async () => {
      for (const e of inv.nodes.etcd) inCt(a!.vmid, ['ip', 'route', 'del', 'unreachable', `${e.ip}/32`]);
    });
    inCt(b!.vmid, ['chmod', '0755', dataDir]);
    undo.set('chmod', async () => inCt(b!.vmid, ['chmod', '0700', dataDir]));
    const hba = await sqlAs(
      inv,
      b!.ip,
      inv.ports.postgresql,
      async (c) => (await c.query<{ f: string }>("select current_setting('hba_file') as f")).rows[0]!.f,
    );
    inCt(b!.vmid, ['cp', '-p', hba, `${hba}.doctor-test`]);
    inCt(b!.vmid, ['sed', '-i', '/^host[[:space:]]\\+replication/d', hba]);
    const reloadB = () => sqlAs(inv, b!.ip, inv.ports.postgresql, (c) => c.query('select pg_reload_conf()'));
    await reloadB();
    undo.set('hba', async () => {
      inCt(b!.vmid, ['mv', `${hba}.doctor-test`, hba]);
      await reloadB();
    });
    const rtCommand = (cmd: string) => withRuntime(inv, (rt) => rt.sessions[0]!.command(cmd));
    await rtCommand(`set server ${HAPROXY_READ_BACKEND}/${b!.hostname} state maint`);
    undo.set('maint', () => rtCommand(`set server ${HAPROXY_READ_BACKEND}/${b!.hostname} state ready`));
    const cfg = (await (await fetch(`${restApi(inv, leader).url}/config`)).json()) as {
      retry_timeout: number;
    };
    await patchConfig(leader, { retry_timeout: 30 });
    undo.set('timing', () => patchConfig(leader, { retry_timeout: cfg.retry_timeout }));

    // Patroni logs the DCS error at its next call to etcd: wait for it (bounded), then all six fail.
    const broken = await doctorUntil((r) => BROKEN.every((id) => statusOf(r, id).status === 'fail'), 60_000);
    t.diagnostic(`every fault seen by doctor ${Date.now() - t0} ms after the first was made`);
    const found = (id: string) => {
      const c = statusOf(broken, id);
      assert.equal(c.status, 'fail', `${id}: ${JSON.stringify(c)}`);
      assert.ok(c.remedy.length > 20, `${id} has a remedy`);
      return c.findings.join('\n');
    };
    assert.match(
      found('etcd-ports'),
      new RegExp(
        `${etcd.hostname} \\(CT ${etcd.vmid}\\): nothing listens on ${etcd.ip.replace(/\./g, '\\.')}:${inv.ports.etcdClient}`,
      ),
    );
    assert.match(
      found('patroni-dcs'),
      new RegExp(
        `${a!.hostname} \\(CT ${a!.vmid}\\): Patroni cannot reach etcd: .*Failed to get list of machines`,
      ),
    );
    assert.match(
      found('data-dir'),
      new RegExp(`${b!.hostname} \\(CT ${b!.vmid}\\): ${dataDir} has mode 0755`),
    );
    assert.match(
      found('pg-hba-replication'),
      new RegExp(
        `${b!.hostname}: pg_hba\\.conf has no line for replication by ${inv.postgresql.replicationUser} from ${leader}`,
      ),
    );
    assert.match(
      found('haproxy-roles'),
      new RegExp(
        `HAProxy ${inv.nodes.haproxy[0]!.hostname}: ${HAPROXY_READ_BACKEND}/${b!.hostname} is MAINT`,
      ),
    );
    assert.match(found('patroni-timing'), /ttl \d+ < loop_wait \d+ \+ 2 × retry_timeout 30/);
    assert.equal(broken.verdict, 'fail');

    // Repair, in the reverse order; every check passes again (Patroni's next HA loop for patroni-dcs).
    for (const [what, fn] of [...undo].reverse()) {
      await fn();
      undo.delete(what);
    }
    const t1 = Date.now();
    const repaired = await doctorUntil(
      (r) => BROKEN.every((id) => statusOf(r, id).status === 'pass'),
      90_000,
    );
    t.diagnostic(`every check passes again ${Date.now() - t1} ms after the repair`);
    for (const id of BROKEN)
      assert.equal(
        statusOf(repaired, id).status,
        'pass',
        `${id} after: ${JSON.stringify(statusOf(repaired, id))}`,
      );
    // The cluster itself, directly: the same leader, both replicas streaming.
    assert.equal(await waitHealthyDirect(inv, 60_000), leader);
    assert.equal(await leaderDirect(inv), leader);
  },
);

void test(
  'doctor: versions flags Patroni 3.3.0 under PostgreSQL 18; a replica promoted by hand fails timeline, a leader restarted with too few WAL senders fails replication-settings; repaired, both pass; clock-skew passes',
  // In CI since it passed 3 of 3 on the main lab (2026-11-30, load average ~8 with a chaos run
  // beside it): 19.5–22.2 s; the timeline passes 7.7–8.8 s after POST /reinitialize. Its first run
  // (a side lab, load ~20) saw the replica `running`, not streaming, at the 180 s bound; not seen since.
  { skip, timeout: 300_000 },
  async (t) => {
    const leader = await waitHealthyDirect(inv, 60_000);
    const b = inv.nodes.postgres.find((n) => n.hostname !== leader)!;
    const healthy = await doctorUntil((r) => statusOf(r, 'timeline').status === 'pass', 30_000);

    // versions: the lab runs Patroni 3.3.0 with PostgreSQL 18, which Patroni first supports in 4.0.7
    // (the upgrade to 4.x that removes it: test/lab/upgrade-patroni.test.ts checks doctor passes then).
    const v = statusOf(healthy, 'versions');
    if (inv.versions.patroni.startsWith('3.')) {
      assert.equal(v.status, 'warn', JSON.stringify(v));
      for (const p of inv.nodes.postgres)
        assert.match(
          v.findings.join('\n'),
          new RegExp(
            `${p.hostname}: Patroni 3\\.3\\.0 does not support PostgreSQL 18 \\(first supported in Patroni 4\\.0\\.7\\)`,
          ),
        );
    }
    // clock-skew: LXC CTs read the host kernel's clock, so no CT's clock can differ from another's —
    // there is no honest fault to inject here (faking the time source would test the fake). It passes;
    // its logic against skewed readings is in test/unit/doctor.test.ts.
    assert.equal(
      statusOf(healthy, 'clock-skew').status,
      'pass',
      JSON.stringify(statusOf(healthy, 'clock-skew')),
    );
    assert.equal(statusOf(healthy, 'replication-settings').status, 'pass');

    // timeline: Patroni paused (it leaves PostgreSQL alone), replica B promoted by hand — a second
    // primary on the next timeline, as after a failover it could not rewind.
    await patchConfig(leader, { pause: true });
    undo.set('pause', () => patchConfig(leader, { pause: false }));
    const leaderIp = inv.nodes.postgres.find((n) => n.hostname === leader)!.ip;
    const tl = await timelineOf(inv, leaderIp);
    await sqlAs(inv, b.ip, inv.ports.postgresql, (c) => c.query('select pg_promote(true, 60)'));
    undo.set('promoted', async () => {
      await patchConfig(leader, { pause: false });
      await rest('POST', b.hostname, '/reinitialize', { force: true }, [200, 503]);
    });
    const t0 = Date.now();
    const split = await doctorUntil((r) => statusOf(r, 'timeline').status === 'fail', 60_000);
    t.diagnostic(`timeline fails ${Date.now() - t0} ms after the promotion`);
    const c = statusOf(split, 'timeline');
    assert.equal(c.status, 'fail', JSON.stringify(c));
    assert.match(
      c.findings.join('\n'),
      new RegExp(`${b.hostname} ${tl + 1}.*\\(the leader ${leader} on ${tl}\\)`),
    );
    assert.match(c.remedy, /pgha reinit --member NAME/);
    // The remedy: Patroni back in charge, B re-cloned from the leader.
    await patchConfig(leader, { pause: false });
    undo.delete('pause');
    // Right after the resume Patroni on B is demoting it: a 503 then is asked again (bounded).
    await waitFor('POST /reinitialize accepted', 60_000, () =>
      rest('POST', b.hostname, '/reinitialize', { force: true }).then(
        () => true,
        () => false,
      ),
    );
    undo.delete('promoted');
    const t1 = Date.now();
    assert.equal(await waitHealthyDirect(inv, 180_000), leader);
    const one = await doctorUntil((r) => statusOf(r, 'timeline').status === 'pass', 60_000);
    t.diagnostic(`timeline passes ${Date.now() - t1} ms after POST /reinitialize`);
    assert.equal(statusOf(one, 'timeline').status, 'pass', JSON.stringify(statusOf(one, 'timeline')));
    assert.equal(await timelineOf(inv, b.ip), tl);

    // replication-settings: max_wal_senders exactly what streams now (no room for a rebuild), which
    // only a restart applies: PATCH /config, then the leader restarted in place (replicas keep the
    // primary's higher value, Patroni takes it from pg_controldata).
    const streams = inv.nodes.postgres.length - 1 + inv.nodes.backup.length;
    const cfg = (await (await fetch(`${restApi(inv, leader).url}/config`)).json()) as {
      postgresql?: { parameters?: Record<string, unknown> };
    };
    const before = cfg.postgresql?.parameters?.max_wal_senders ?? null;
    const restartLeader = () => rest('POST', leader, '/restart', {}, [200]);
    await patchConfig(leader, { postgresql: { parameters: { max_wal_senders: streams } } });
    undo.set('senders', async () => {
      await patchConfig(leader, { postgresql: { parameters: { max_wal_senders: before } } });
      await restartLeader();
    });
    await restartLeader();
    const t2 = Date.now();
    const low = await doctorUntil((r) => statusOf(r, 'replication-settings').status === 'fail', 90_000);
    t.diagnostic(`replication-settings fails ${Date.now() - t2} ms after the leader's restart`);
    const rs = statusOf(low, 'replication-settings');
    assert.equal(rs.status, 'fail', JSON.stringify(rs));
    assert.match(
      rs.findings.join('\n'),
      new RegExp(`${leader}: max_wal_senders is ${streams}, needs at least ${streams + 1}`),
    );
    await patchConfig(leader, { postgresql: { parameters: { max_wal_senders: before } } });
    await restartLeader();
    undo.delete('senders');
    const t3 = Date.now();
    const enough = await doctorUntil((r) => statusOf(r, 'replication-settings').status === 'pass', 90_000);
    t.diagnostic(`replication-settings passes ${Date.now() - t3} ms after the repair`);
    assert.equal(statusOf(enough, 'replication-settings').status, 'pass');
    // The cluster itself, directly: the same leader, every replica streaming.
    assert.equal(await waitHealthyDirect(inv, 120_000), leader);
  },
);
