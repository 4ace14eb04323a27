/**
 * Replays every history saved under test/histories/ (recorded by scripts/record-history.ts from the
 * released runbooks) against the current workflow code: a change that would break runs in flight
 * fails here. Histories are recorded without the payload codec (see scripts/record-history.ts), so
 * replay uses the same data converter minus the codec.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { historyFromCliJson } from '../helpers/history';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import type { ReplayResult } from '@temporalio/worker';
import { historiesDir, replayDataConverter } from '../../scripts/record-history';
import { workflowsPath } from '../../workers/main';
import { installTestRuntime } from '../helpers/temporal';

const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error };
const files = readdirSync(historiesDir).filter((f) => f.endsWith('.json'));
const histories = () =>
  files.map((f) => ({
    workflowId: basename(f, '.json'),
    history: historyFromCliJson(JSON.parse(readFileSync(join(historiesDir, f), 'utf8'))),
  }));

async function replay(path: string): Promise<ReplayResult[]> {
  const workflowBundle = await bundleWorkflowCode({
    workflowsPath: path,
    ...replayDataConverter,
    logger: quiet,
  });
  const results: ReplayResult[] = [];
  for await (const r of Worker.runReplayHistories(
    { workflowBundle, dataConverter: replayDataConverter },
    histories(),
  )) {
    results.push(r);
  }
  return results;
}

before(() => installTestRuntime());

void test('every saved history replays against the current workflows', async () => {
  assert.ok(
    files.some((f) => f.startsWith('smoke-')),
    'the smoke runbook history is saved',
  );
  const results = await replay(workflowsPath);
  assert.equal(results.length, files.length);
  for (const r of results) assert.equal(r.error, undefined, `${r.workflowId}: ${String(r.error)}`);
});

void test('a non-deterministic change to a released runbook is caught', async () => {
  const results = await replay(require.resolve('../helpers/changed-workflows'));
  const smoke = results.filter((r) => r.workflowId.startsWith('smoke-'));
  assert.ok(smoke.length >= 1);
  for (const r of smoke) {
    assert.ok(
      r.error instanceof DeterminismViolationError,
      `${r.workflowId}: expected a determinism violation, got ${String(r.error)}`,
    );
  }
});
