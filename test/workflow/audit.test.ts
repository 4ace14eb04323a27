/**
 * Who did what, readable: on a real dev server with the real worker and the real CLI, a smoke run
 * started by alice and approved by bob, then one started by carol (PGHA_OPERATOR) and cancelled by
 * dave. Checked: PgOperator and `pgha history` name them in order, the history's events carry their
 * identity, the static summary/details and the activity summaries decode with the key and are
 * ciphertext without it, `pgha runs` shows run ids, `pgha watch` of a finished run prints its result
 * report, and `pgha cancel --watch` exits 0 once the run ends cancelled.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { AesGcmCodec, loadCodecKey, pghaDataConverter } from '../../clients/codec';
import type { HistoryEntry } from '../../clients/commands/history';
import { PgOperator } from '../../workflows/messages';
import { Proc, repoRoot, waitFor } from '../helpers/local-common';
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

void test('operators, summaries and the CLI fixes, through the real worker and CLI', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgha-audit-'));
  const cluster = uniqueId('audit');
  const id = `smoke-${cluster}`;
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    TEMPORAL_ADDRESS: env.address,
    TEMPORAL_NAMESPACE: 'default',
    PGHA_TASK_QUEUE: uniqueId('audit'),
    PGHA_STATE_DIR: join(dir, 'state'),
    PGHA_CODEC_KEY_FILE: join(dir, 'codec.key'),
    PGHA_METRICS_ADDRESS: 'off',
  };
  delete childEnv.PGHA_CODEC_KEY;
  delete childEnv.PGHA_OPERATOR;
  const pgha = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
    exec(process.execPath, [join(repoRoot, 'bin/pgha.js'), ...args], {
      cwd: repoRoot,
      env: { ...childEnv, ...extra },
    }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );
  const spawnPgha = (name: string, args: string[], extra: NodeJS.ProcessEnv = {}) => {
    const p = new Proc(name, process.execPath, [join(repoRoot, 'bin/pgha.js'), ...args], {
      cwd: repoRoot,
      env: { ...childEnv, ...extra },
    });
    procs.push(p);
    return p;
  };

  assert.equal((await pgha(['keygen'])).code, 0);
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
    return worker.output().includes(`task queue ${String(childEnv.PGHA_TASK_QUEUE)}`);
  });

  // ---- 1. started by alice (--by), approved by bob ----
  const first = spawnPgha('smoke alice', [
    'smoke',
    '--cluster',
    cluster,
    '--approval-timeout',
    '5m',
    '--by',
    'alice',
  ]);
  await waitFor('smoke at its gate', 60_000, async () => {
    if (!first.running) throw new Error(first.output());
    return first.output().includes(`decide: pgha approve ${id} --gate before-verify`);
  });
  const runs = await pgha(['runs', '--cluster', cluster]);
  assert.equal(runs.code, 0, runs.out);
  const runId = /started smoke-\S+ \(run ([0-9a-f-]{36})\)/.exec(first.output())?.[1];
  assert.ok(runId, first.output());
  assert.match(runs.out, new RegExp(`${id}.*${runId}.*alice.*RUNNING`), 'runs shows the run id and who');

  const ok = await pgha(['approve', '--cluster', cluster, '--gate', 'before-verify', '--by', 'bob']);
  assert.equal(ok.code, 0, ok.out);
  assert.equal(await first.exited, 0, first.output());
  assert.match(first.output(), new RegExp(`${id}: completed`));
  assert.match(first.output(), /^worker: .+$/m, 'the result report is printed (the smoke result as YAML)');
  assert.match(first.output(), /^approvedBy: bob$/m);

  // watch on the finished run prints the same report and exits 0
  const watched = await pgha(['watch', id]);
  assert.equal(watched.code, 0, watched.out);
  assert.match(watched.out, /^approvedBy: bob$/m);

  // ---- the run's own record: PgOperator, identities, summaries decoded only with the key ----
  const key = loadCodecKey({ PGHA_CODEC_KEY_FILE: childEnv.PGHA_CODEC_KEY_FILE });
  const keyed = new Client({
    connection: env.client.connection,
    dataConverter: pghaDataConverter(new AesGcmCodec(key)),
  });
  const handle = keyed.workflow.getHandle(id, runId);
  const desc = await handle.describe();
  assert.deepEqual(desc.typedSearchAttributes.get(PgOperator), ['alice', 'bob']);
  assert.equal(await desc.staticSummary(), `pgha smoke on cluster ${cluster}, started by alice`);
  const details = (await desc.staticDetails()) ?? '';
  assert.match(details, new RegExp(`\\*\\*cluster\\*\\* ${cluster}`));
  assert.match(details, /\*\*started by\*\* alice/);
  assert.match(details, /"approvalTimeout": "5m"/);

  const history = await handle.fetchHistory();
  const events = history.events ?? [];
  const started = events[0]!;
  assert.match(started.workflowExecutionStartedEventAttributes?.identity ?? '', /^alice \(pgha /);
  const raw = started.userMetadata?.summary;
  assert.ok(raw?.data, 'the static summary is in the history');
  assert.ok(!Buffer.from(raw.data).toString('latin1').includes('alice'), 'without the key it is ciphertext');
  const accepted = events.find((e) => e.workflowExecutionUpdateAcceptedEventAttributes);
  assert.match(
    accepted?.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.meta?.identity ?? '',
    /^bob \(pgha /,
  );
  const codec = new AesGcmCodec(key);
  const summaries: string[] = [];
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes ? e.userMetadata?.summary : undefined;
    if (s) summaries.push(defaultPayloadConverter.fromPayload<string>((await codec.decode([s]))[0]!));
  }
  assert.deepEqual(summaries.slice(0, 2), [
    `smokePreflight cluster ${cluster}`,
    `smokeWriteMarker marker of run ${runId}`,
  ]);
  const timer = events.find((e) => e.timerStartedEventAttributes);
  assert.ok(timer?.userMetadata?.summary, 'the gate wait carries a summary');
  assert.match(
    defaultPayloadConverter.fromPayload<string>((await codec.decode([timer.userMetadata.summary]))[0]!),
    /^gate before-verify: waiting for pgha approve until /,
  );

  // ---- 2. started by carol (PGHA_OPERATOR), paused by her, cancelled by dave ----
  const second = await pgha(['smoke', '--cluster', cluster, '--approval-timeout', '5m', '--no-wait'], {
    PGHA_OPERATOR: 'carol',
  });
  assert.equal(second.code, 0, second.out);
  await waitFor('the second run at its gate', 30_000, async () =>
    (await pgha(['runs', '--cluster', cluster])).out.includes('before-verify'),
  );
  assert.equal((await pgha(['pause', '--cluster', cluster], { PGHA_OPERATOR: 'carol' })).code, 0);
  const cancel = await pgha(['cancel', '--cluster', cluster, '--by', 'dave', '--watch']);
  assert.equal(cancel.code, 0, cancel.out);
  assert.match(cancel.out, new RegExp(`${id}: cancelled`));

  const hist = await pgha(['history', '--cluster', cluster, '--json']);
  assert.equal(hist.code, 0, hist.out);
  const entries = JSON.parse(hist.out) as HistoryEntry[];
  assert.equal(entries.length, 2, hist.out);
  const byRun = new Map(entries.map((e) => [e.runId, e]));
  const firstEntry = byRun.get(runId)!;
  assert.deepEqual(
    [firstEntry.operators, firstEntry.outcome, firstEntry.operation],
    [['alice', 'bob'], 'completed', 'smoke'],
  );
  assert.ok((firstEntry.durationMs ?? 0) > 0);
  const other = entries.find((e) => e.runId !== runId)!;
  assert.deepEqual([other.operators, other.outcome], [['carol', 'dave'], 'cancelled']);

  const table = await pgha(['history', '--cluster', cluster]);
  assert.match(table.out, new RegExp(`smoke.*alice, bob.*completed.*${id}.*${runId}`));
});
