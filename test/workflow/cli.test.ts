/**
 * The operator's path end to end on a real dev server: `pgha keygen`, the real worker entry
 * (workers/main.ts, with Prometheus metrics), `pgha smoke --dry-run` printing its plan, `pgha schedule
 * backup --dry-run` printing the schedule it would create (none is), `pgha smoke` waiting at its gate,
 * `pgha runs`, a second operation on the same cluster refused by name, `pgha approve`, the run
 * completing, and the worker stopping gracefully on SIGTERM.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Proc, freePort, repoRoot, waitFor } from '../helpers/local-common';
import { startTestServer, uniqueId } from '../helpers/temporal';

const exec = promisify(execFile);
let env: TestWorkflowEnvironment;
const procs: Proc[] = [];
before(async () => {
  env = await startTestServer();
});
after(async () => {
  for (const p of procs) await p.stop();
  await env?.teardown();
});

void test('pgha keygen, worker, dry runs, smoke with approval, runs, busy cluster, approve, graceful stop', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgha-cli-'));
  const metricsPort = await freePort();
  const cluster = uniqueId('cli');
  const childEnv: NodeJS.ProcessEnv & Record<'PGHA_CODEC_KEY_FILE' | 'PGHA_TASK_QUEUE', string> = {
    ...process.env,
    TEMPORAL_ADDRESS: env.address,
    TEMPORAL_NAMESPACE: 'default',
    PGHA_TASK_QUEUE: uniqueId('cli'),
    PGHA_STATE_DIR: join(dir, 'state'),
    PGHA_CODEC_KEY_FILE: join(dir, 'codec.key'),
    PGHA_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
    PGHA_SMOKE_SECRET: 'cli-test-secret',
  };
  delete childEnv.PGHA_CODEC_KEY;
  const pgha = (...args: string[]) =>
    exec(process.execPath, [join(repoRoot, 'bin/pgha.js'), ...args], { cwd: repoRoot, env: childEnv }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );
  const spawnPgha = (name: string, ...args: string[]) => {
    const p = new Proc(name, process.execPath, [join(repoRoot, 'bin/pgha.js'), ...args], {
      cwd: repoRoot,
      env: childEnv,
    });
    procs.push(p);
    return p;
  };

  const keygen = await pgha('keygen');
  assert.equal(keygen.code, 0, keygen.out);
  assert.equal(statSync(childEnv.PGHA_CODEC_KEY_FILE).mode & 0o777, 0o600);

  const worker = new Proc(
    'worker',
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'workers/main.ts')],
    {
      cwd: repoRoot,
      env: childEnv,
    },
  );
  procs.push(worker);
  await waitFor('the worker polling', 60_000, async () => {
    if (!worker.running) throw new Error(worker.output());
    return worker.output().includes(`task queue ${childEnv.PGHA_TASK_QUEUE}`);
  });

  // --dry-run: the preflight only, the plan printed, exit 0; no marker, no gate
  const drySmoke = await pgha(
    'smoke',
    '--cluster',
    `${cluster}-dry`,
    '--secret-ref',
    'env:PGHA_SMOKE_SECRET',
    '--approval-timeout',
    '5m',
    '--dry-run',
  );
  assert.equal(drySmoke.code, 0, drySmoke.out);
  assert.match(
    drySmoke.out,
    new RegExp(`dry run of smoke on cluster ${cluster}-dry: the plan, in order \\(nothing was touched\\)`),
  );
  assert.match(drySmoke.out, /\n {2}3\. gate before-verify: wait up to 5m for pgha approve\n/);
  assert.match(drySmoke.out, /\n {2}5\. cleanup on worker /);
  assert.doesNotMatch(drySmoke.out, /cli-test-secret/);

  // a schedule's --dry-run: what it would create, and nothing is created
  const drySchedule = await pgha(
    'schedule',
    'backup',
    '--cluster',
    'runbooks/clusters/lab.yaml',
    '--cron',
    '0 3 * * *',
    '--retention',
    'REDUNDANCY 3',
    '--dry-run',
  );
  assert.equal(drySchedule.code, 0, drySchedule.out);
  assert.match(
    drySchedule.out,
    /^dry run of schedule backup on cluster lab: the plan, in order \(nothing was touched\)\n {2}1\. create schedule backup-lab-physical /,
  );
  assert.match(drySchedule.out, /start workflow backup on task queue .*"retention":"REDUNDANCY 3"/);
  const schedules = await pgha('schedule', 'list', '--cluster', 'lab');
  assert.equal(schedules.code, 0, schedules.out);
  assert.match(schedules.out, /^no pgha schedules$/m);

  const smoke = spawnPgha(
    'pgha smoke',
    'smoke',
    '--cluster',
    cluster,
    '--secret-ref',
    'env:PGHA_SMOKE_SECRET',
    '--approval-timeout',
    '5m',
  );
  await waitFor('smoke at its gate', 60_000, async () => {
    if (!smoke.running) throw new Error(smoke.output());
    return smoke.output().includes(`decide: pgha approve smoke-${cluster} --gate before-verify`);
  });

  const runs = await pgha('runs', '--cluster', cluster);
  assert.equal(runs.code, 0, runs.out);
  assert.match(runs.out, new RegExp(`smoke-${cluster}.*RUNNING.*before-verify`));

  const second = await pgha('smoke', '--cluster', cluster);
  assert.equal(second.code, 1, second.out);
  assert.match(
    second.out,
    new RegExp(`cluster ${cluster} is busy: smoke-${cluster} \\(operation smoke, at step before-verify`),
  );

  const bad = await pgha('approve', '--cluster', cluster, '--gate', 'before-everything', '--by', 'ci');
  assert.equal(bad.code, 1);
  assert.match(bad.out, /unknown gate "before-everything": this runbook's gates are before-verify/);

  const ok = await pgha(
    'approve',
    '--cluster',
    cluster,
    '--gate',
    'before-verify',
    '--by',
    'ci',
    '--reason',
    'test',
  );
  assert.equal(ok.code, 0, ok.out);
  assert.match(ok.out, /gate before-verify approved by ci/);

  assert.equal(await smoke.exited, 0, smoke.output());
  assert.match(smoke.output(), new RegExp(`smoke-${cluster}: completed`));
  assert.match(smoke.output(), /cleanup\s+completed/);

  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(metrics, /temporal_workflow_completed/);

  worker.child.kill('SIGTERM');
  assert.equal(await worker.exited, 0, worker.output());
  assert.match(worker.output(), /pgha worker stopped/);
});
