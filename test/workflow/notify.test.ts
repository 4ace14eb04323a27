/**
 * Notifications (inventory `notify.webhook`, activities/notify.ts, sent by the runbook machinery in
 * workflows/steps.ts) on a real dev server: the real notify activity POSTs to a receiver on loopback;
 * the other activities are mocked. A completed deploy, a gated deploy paused by one operator and
 * approved by another, a refused switchover: each payload is checked. A webhook that fails is
 * retried, and one that refuses never fails the runbook. The URL (with its token) is a secret: only
 * its reference travels; the secrets scan (zz-secrets-scan.test.ts) looks for the URL itself.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRunbook } from '../../clients/runbook';
import { createNotifyActivities } from '../../activities/notify';
import type { WebhookMessage } from '../../activities/notify';
import { Failures } from '../../runbooks/failures';
import type { InventoryInput } from '../../runbooks/schema';
import type { deployCluster } from '../../workflows/deploy-cluster';
import type { switchover } from '../../workflows/switchover';
import { PgOutcome, approve, pause, resume } from '../../workflows/messages';
import { deployMocks } from '../helpers/deploy-mocks';
import { labInventoryInput } from '../helpers/lab-inventory';
import { testArtifact } from '../helpers/local-common';
import { createTestWorker, eventually, startTestServer, uniqueId } from '../helpers/temporal';
import { notDryRun } from '../../workflows/dry-run';

/** The receiver's answer per POST path: a status, or a list used up one per POST (then 200). */
const answers = new Map<string, number[]>();
const received: { path: string; contentType?: string; body: WebhookMessage }[] = [];
let receiver: Server;
let base = '';
let env: TestWorkflowEnvironment;
/** The webhook's token, as a chat service puts it in the URL path: the secret part. */
const token = randomBytes(12).toString('hex');

before(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      received.push({
        path,
        contentType: req.headers['content-type'],
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as WebhookMessage,
      });
      const queue = answers.get(path);
      res.writeHead(queue?.shift() ?? 200).end('ok');
    });
  });
  await new Promise<void>((ok) => receiver.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
  await new Promise<void>((ok) => receiver?.close(() => ok()));
});

/** A webhook URL (its path names the test) in an env var of this process (the worker's), and its reference. */
function webhook(name: string): { ref: string; path: string } {
  const path = `/hooks/${name}/${token}`;
  const envName = `PGHA_TEST_WEBHOOK_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
  process.env[envName] = `${base}${path}`;
  // For the secrets scan: the URL is a secret, it must be nowhere in clear.
  const file = testArtifact(`webhook-${process.pid}-${name}.url`);
  if (file) writeFileSync(file, `${base}${path}`, { mode: 0o600 });
  return { ref: `env:${envName}`, path };
}

const inventory = (cluster: string, ref: string): InventoryInput => ({
  ...labInventoryInput(),
  cluster,
  notify: { webhook: ref },
});

const eventsAt = (path: string) => received.filter((r) => r.path === path).map((r) => r.body);
const kinds = (path: string) => eventsAt(path).map((e) => e.pgha.kind);

function worker(taskQueue: string, extra: Record<string, (...a: never[]) => Promise<unknown>> = {}) {
  return createTestWorker(env, {
    taskQueue,
    activities: { ...deployMocks().activities, ...createNotifyActivities(), ...extra },
  });
}

void test('a completed deploy: started, then completed, as Slack-compatible JSON', async () => {
  const hook = webhook('completed');
  const cluster = uniqueId('nc');
  const taskQueue = uniqueId('notify');
  const w = await worker(taskQueue);
  const h = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: inventory(cluster, hook.ref) }],
    cluster,
    operation: 'deploy',
    operator: 'erin',
    taskQueue,
  });
  await w.runUntil(h.result());
  assert.deepEqual(kinds(hook.path), ['started', 'completed']);
  const [started, done] = eventsAt(hook.path);
  for (const r of received.filter((x) => x.path === hook.path))
    assert.equal(r.contentType, 'application/json');
  const { runId } = await h.describe();
  assert.deepEqual(
    { ...started!.pgha, startedAt: undefined },
    {
      kind: 'started',
      cluster,
      operation: 'deploy',
      workflowId: h.workflowId,
      runId,
      operators: ['erin'],
      startedAt: undefined,
    },
  );
  assert.equal(
    started!.text,
    `:arrow_forward: pgha *deploy* on cluster *${cluster}* (\`${h.workflowId}\`) started, started by erin`,
  );
  assert.equal(done!.pgha.outcome, 'all steps completed');
  assert.equal(typeof done!.pgha.durationMs, 'number');
  assert.match(
    done!.text,
    new RegExp(
      `^:white_check_mark: pgha \\*deploy\\* on cluster \\*${cluster}\\*.* completed after \\d+ s: all steps completed$`,
    ),
  );
  // Only the reference travelled: the history holds no URL and no token.
  const history = JSON.stringify(await h.fetchHistory());
  assert.ok(!history.includes(token), 'the webhook token is not in the history');
});

void test('a gated deploy: approval needed, paused by one operator, approved by another, completed', async () => {
  const hook = webhook('gated');
  const cluster = uniqueId('ng');
  const taskQueue = uniqueId('notify');
  const w = await worker(taskQueue);
  const h = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: inventory(cluster, hook.ref), approvalTimeout: '1h' }],
    cluster,
    operation: 'deploy',
    operator: 'erin',
    taskQueue,
  });
  await w.runUntil(async () => {
    await eventually(
      'approval-needed notification',
      async () => kinds(hook.path),
      (k) => k.includes('approval-needed'),
    );
    await h.signal(pause, { by: 'bob', reason: 'change window' });
    await h.executeUpdate(approve, { args: [{ gate: 'before-bootstrap', approver: 'carol' }] });
    await eventually(
      'paused notification',
      async () => kinds(hook.path),
      (k) => k.includes('paused'),
    );
    await h.signal(resume, { by: 'bob' });
    await h.result();
  });
  assert.deepEqual(kinds(hook.path), ['started', 'approval-needed', 'paused', 'completed']);
  const [, gate, paused, done] = eventsAt(hook.path);
  assert.equal(gate!.pgha.gate, 'before-bootstrap');
  assert.ok(
    Date.parse(gate!.pgha.deadline!) > Date.parse(gate!.pgha.startedAt),
    'the gate deadline is ahead',
  );
  assert.match(gate!.text, new RegExp(`pgha approve ${h.workflowId} --gate before-bootstrap --by NAME`));
  assert.equal(paused!.pgha.by, 'bob');
  assert.equal(paused!.pgha.reason, 'change window');
  assert.match(paused!.text, /paused by bob: change window/);
  assert.deepEqual(done!.pgha.operators, ['erin', 'bob', 'carol']);
});

void test('a refused switchover: started, then refused with the pre-check reason', async () => {
  const hook = webhook('refused');
  const cluster = uniqueId('nr');
  const taskQueue = uniqueId('notify');
  const reason = 'candidate pg104 lags 12 MiB behind the leader (limit 1 MiB); wait, or choose pg103';
  const w = await worker(taskQueue, {
    switchoverPrecheck: async () => {
      throw ApplicationFailure.nonRetryable(reason, Failures.SwitchoverRefused);
    },
  });
  const h = await startRunbook<typeof switchover>(env.client, {
    workflow: 'switchover',
    args: [{ inventory: inventory(cluster, hook.ref), candidate: 'pg104' }],
    cluster,
    operation: 'switchover',
    operator: 'dave',
    taskQueue,
  });
  await w.runUntil(h.result().catch(() => undefined));
  assert.equal((await h.describe()).searchAttributes[PgOutcome.name]?.[0], 'refused');
  assert.deepEqual(kinds(hook.path), ['started', 'refused']);
  const refused = eventsAt(hook.path)[1]!;
  assert.equal(refused.pgha.failureType, Failures.SwitchoverRefused);
  assert.equal(refused.pgha.outcome, reason);
  assert.match(refused.text, /^:no_entry: pgha \*switchover\* .* refused after \d+ s: candidate pg104 lags/);
});

void test('a failing webhook is retried; a refusing one never fails the runbook', async () => {
  const flaky = webhook('flaky');
  answers.set(flaky.path, [503, 503]); // the first POST and its first retry fail
  const refusing = webhook('refusing');
  answers.set(refusing.path, [404, 404, 404, 404]);
  const taskQueue = uniqueId('notify');
  const w = await worker(taskQueue);
  const run = async (ref: string) => {
    const cluster = uniqueId('nf');
    const h = await startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory: inventory(cluster, ref) }],
      cluster,
      operation: 'deploy',
      operator: 'erin',
      taskQueue,
    });
    return notDryRun(await h.result());
  };
  const [a, b] = await w.runUntil(Promise.all([run(flaky.ref), run(refusing.ref)]));
  assert.equal(a.verdict.status, 'healthy');
  assert.equal(b.verdict.status, 'healthy', 'the run succeeded although its webhook refused');
  const flakyKinds = kinds(flaky.path);
  assert.equal(flakyKinds.length, 4, 'two failed POSTs, then started and completed delivered');
  assert.deepEqual([...new Set(flakyKinds)].sort(), ['completed', 'started']);
  assert.deepEqual(kinds(refusing.path), ['started', 'completed'], 'a refusal (404) is not retried');
});
