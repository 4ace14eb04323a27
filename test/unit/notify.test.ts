/**
 * The webhook module (activities/notify.ts) alone: the chat line of each kind of event, and errors
 * that name the reference but never the URL (its path is the webhook's key) — a URL that is not
 * http(s), a port where nothing listens, a webhook that refuses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApplicationFailure } from '@temporalio/common';
import { postWebhook, webhookMessage } from '../../activities/notify';
import type { RunEvent } from '../../activities/notify';
import { Failures } from '../../runbooks/failures';
import { freePort } from '../helpers/local-common';

const event: RunEvent = {
  kind: 'approval-needed',
  cluster: 'lab',
  operation: 'switchover',
  workflowId: 'switchover-lab',
  runId: 'r1',
  operators: ['alice'],
  gate: 'switchover',
  deadline: '2026-11-30T01:00:00.000Z',
  startedAt: '2026-11-30T00:00:00.000Z',
};

void test('the chat line says what happened and what to do', () => {
  assert.equal(
    webhookMessage(event).text,
    ':raised_hand: pgha *switchover* on cluster *lab* (`switchover-lab`) waits at gate *switchover* until 2026-11-30T01:00:00.000Z: `pgha approve switchover-lab --gate switchover --by NAME`',
  );
  assert.equal(
    webhookMessage({
      ...event,
      kind: 'failed',
      outcome: 'verify: pg103 is not the leader',
      durationMs: 61_400,
    }).text,
    ':x: pgha *switchover* on cluster *lab* (`switchover-lab`) failed after 61 s: verify: pg103 is not the leader',
  );
  assert.deepEqual(webhookMessage(event).pgha, event, 'the event itself rides along for machines');
});

void test('errors name the reference, never the URL', async () => {
  const token = 'T0KEN-s3cr3t-9f8e7d';
  const at = (url: string) => {
    process.env.PGHA_UNIT_WEBHOOK = url;
    return postWebhook({ timeoutMs: 2000 }, { webhook: 'env:PGHA_UNIT_WEBHOOK', event });
  };
  const noLeak = (err: unknown) => {
    assert.ok(err instanceof Error);
    assert.ok(!err.message.includes(token), `no token in: ${err.message}`);
    assert.match(err.message, /env:PGHA_UNIT_WEBHOOK/);
    return err;
  };

  const invalid = noLeak(await at(`ftp://127.0.0.1/${token}`).catch((e: unknown) => e));
  assert.ok(invalid instanceof ApplicationFailure && invalid.nonRetryable);
  assert.equal(invalid.type, Failures.NotifyWebhookInvalid);

  const closed = noLeak(await at(`http://127.0.0.1:${await freePort()}/${token}`).catch((e: unknown) => e));
  assert.match(closed.message, /unreachable: ECONNREFUSED/);
  assert.ok(!(closed instanceof ApplicationFailure), 'unreachable: left to the retry policy');

  const srv = createServer((_req, res) => res.writeHead(403).end());
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  try {
    const port = (srv.address() as AddressInfo).port;
    const refused = noLeak(await at(`http://127.0.0.1:${port}/${token}`).catch((e: unknown) => e));
    assert.ok(refused instanceof ApplicationFailure && refused.nonRetryable);
    assert.equal(refused.type, Failures.NotifyWebhookRefused);
    assert.match(refused.message, /answered HTTP 403/);
  } finally {
    srv.close();
  }
});
