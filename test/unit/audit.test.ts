/** The pure parts of auditing: outcomes, --since, --cluster, operator names, run metadata, labels. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterName, formatDuration, historyOutcome, parseSince } from '../../clients/commands/history';
import { describeResult } from '../../clients/commands/runs';
import { checkOperatorName } from '../../clients/operator';
import { inventoryDigest, runbookMetadata } from '../../clients/runbook';
import { activitySummary, at } from '../../workflows/activity-options';

void test('history outcome: the status, refined by PgOutcome for failures', () => {
  assert.equal(historyOutcome('COMPLETED', 'succeeded'), 'completed');
  assert.equal(historyOutcome('FAILED', 'refused'), 'refused');
  assert.equal(historyOutcome('FAILED', 'rejected'), 'rejected');
  assert.equal(historyOutcome('FAILED', undefined), 'failed');
  assert.equal(historyOutcome('FAILED', 'failed'), 'failed');
  assert.equal(historyOutcome('CANCELLED', 'cancelled'), 'cancelled');
  assert.equal(historyOutcome('TERMINATED', undefined), 'terminated');
  assert.equal(historyOutcome('RUNNING', undefined), 'running');
});

void test('--since: an age or an ISO time; anything else names the forms', () => {
  const now = Date.parse('2026-11-29T12:00:00Z');
  assert.equal(parseSince('7d', now).toISOString(), '2026-11-22T12:00:00.000Z');
  assert.equal(parseSince('30m', now).toISOString(), '2026-11-29T11:30:00.000Z');
  assert.equal(parseSince('2026-11-26T23:00:00Z', now).toISOString(), '2026-11-26T23:00:00.000Z');
  assert.throws(() => parseSince('last week', now), /--since "last week" is not a time: use ISO 8601/);
  assert.equal(formatDuration(1500), '1.5 s');
  assert.equal(formatDuration(185_000), '3 min 5 s');
});

void test('--cluster: a name, or an inventory file whose cluster: is read; no quote gets into a query', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgha-hist-'));
  const file = join(dir, 'x.yaml');
  writeFileSync(file, 'cluster: labz\nnodes: {}\n');
  assert.equal(clusterName(file), 'labz');
  assert.equal(clusterName('lab'), 'lab');
  assert.throws(() => clusterName("lab' OR 1=1"), /is not a valid id part/);
  assert.throws(() => clusterName(join(dir, 'missing.yaml')), /no such inventory file/);
});

void test('operator names: what a search attribute carries safely', () => {
  assert.equal(checkOperatorName(' alice '), 'alice');
  assert.equal(checkOperatorName('Jürgen M.'), 'Jürgen M.');
  assert.throws(() => checkOperatorName(''), /--by "" is not an operator name/);
  assert.throws(() => checkOperatorName("x'); drop"), /is not an operator name/);
});

void test('run metadata: summary and details name cluster, operation, who; the inventory only as a digest', () => {
  const inventory = { cluster: 'lab', secrets: { superuser: 'file:/etc/pgha/su' }, nodes: { postgres: [] } };
  const m = runbookMetadata(
    {
      cluster: 'lab',
      operation: 'switchover',
      workflowId: 'switchover-lab',
      args: [{ inventory, candidate: 'pg103' }],
    },
    'alice',
  );
  assert.equal(m.staticSummary, 'pgha switchover on cluster lab, started by alice');
  assert.match(m.staticDetails, /\*\*started by\*\* alice/);
  assert.match(m.staticDetails, /"candidate": "pg103"/);
  assert.match(m.staticDetails, new RegExp(`\\*\\*inventory\\*\\* ${inventoryDigest(inventory)}`));
  assert.ok(!m.staticDetails.includes('/etc/pgha/su'), 'the inventory itself is not copied');
  // key order does not change the digest; a value does
  assert.equal(inventoryDigest({ a: 1, b: [1, 2] }), inventoryDigest({ b: [1, 2], a: 1 }));
  assert.notEqual(inventoryDigest({ a: 1 }), inventoryDigest({ a: 2 }));
});

void test('timeline labels: activity type, node and CT', () => {
  const inv = {
    nodes: { haproxy: [{ hostname: 'haproxy1', vmid: 100 }], postgres: [{ hostname: 'pg102', vmid: 102 }] },
  };
  assert.equal(activitySummary('installHaproxy', at(inv, 'haproxy1')), 'installHaproxy haproxy1 (CT 100)');
  assert.equal(at(inv, 'haproxy1', 'pg102'), 'haproxy1, pg102 (CT 100, 102)');
  assert.equal(activitySummary('findLeader', ''), 'findLeader');
});

void test('result report: a switchover as its report, anything else as YAML', () => {
  assert.equal(describeResult({ worker: 'w1', approvedBy: 'bob' }), 'worker: w1\napprovedBy: bob');
  assert.equal(describeResult(undefined), '');
});
