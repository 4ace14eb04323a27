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

async function replay(path: string, opts: { unguarded?: boolean } = {}): Promise<ReplayResult[]> {
  const workflowBundle = await bundleWorkflowCode({
    workflowsPath: path,
    ...replayDataConverter,
    logger: quiet,
    // unguarded: the workflows see a patched() that is always true (the changes without their guards).
    webpackConfigHook: opts.unguarded
      ? (config) => {
          const alias = { '@temporalio/workflow$': require.resolve('../helpers/patched-always') };
          config.resolve = { ...config.resolve, alias: { ...(config.resolve?.alias as object), ...alias } };
          return config;
        }
      : undefined,
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

/** The workflow type and first input of a saved history (recorded without the codec: plain JSON). */
function started(file: string): { type: string; input: Record<string, unknown> } {
  const h = JSON.parse(readFileSync(join(historiesDir, file), 'utf8')) as {
    events: {
      workflowExecutionStartedEventAttributes?: {
        workflowType: { name: string };
        input?: { payloads: { data: string }[] };
      };
    }[];
  };
  const a = h.events[0]!.workflowExecutionStartedEventAttributes!;
  const data = a.input?.payloads[0]?.data;
  return {
    type: a.workflowType.name,
    input: data ? (JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as Record<string, unknown>) : {},
  };
}

void test('every released runbook has a history recorded on the lab, holding secrets only as references', () => {
  const lab = files.filter((f) => f.startsWith('lab-')).map((f) => ({ f, ...started(f) }));
  const types = new Set(lab.map((h) => h.type));
  for (const released of [
    'deployCluster',
    'switchover',
    'failover',
    'rollingRestart',
    'applyConfig',
    'reinitReplica',
  ]) {
    assert.ok(
      types.has(released),
      `no saved lab history of ${released}: record one (PGHA_RECORD_LAB, scripts/record-history.ts)`,
    );
  }
  for (const h of lab) {
    const secrets = (h.input.inventory as { secrets?: Record<string, unknown> } | undefined)?.secrets ?? {};
    assert.ok(Object.keys(secrets).length > 0, `${h.f}: an inventory with its secrets section`);
    for (const [name, ref] of Object.entries(secrets)) {
      assert.match(String(ref), /^(file|env):/, `${h.f}: secrets.${name} is a reference, not a value`);
    }
  }
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

void test('the patched() guards are what keeps the lab histories replaying: without them they fail', async () => {
  const results = await replay(workflowsPath, { unguarded: true });
  const broken = results.filter((r) => r.error !== undefined).map((r) => r.workflowId);
  // deployCluster, switchover, ... each end with the PgOutcome upsert that runs before it did not have.
  for (const f of files.filter((x) => x.startsWith('lab-'))) {
    assert.ok(
      broken.includes(basename(f, '.json')),
      `${f} replays even without the guards: ${broken.join(', ')}`,
    );
  }
});
