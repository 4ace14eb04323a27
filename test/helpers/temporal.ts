/**
 * The shared Temporal test harness: one real dev server per test file (the binary built by
 * scripts/bootstrap, pgha's search attributes registered), the workflow bundle built once per process,
 * a Worker per test, and the payload codec with a per-process key, as in production.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { defaultPayloadConverter } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, Worker, bundleWorkflowCode } from '@temporalio/worker';
import type { WorkerOptions } from '@temporalio/worker';
import { AesGcmCodec, pghaDataConverter } from '../../clients/codec';
import { temporalBinary } from '../../temporal.config';
import { searchAttributeKeys } from '../../workflows/messages';
import { testArtifact, waitFor } from './local-common';

/** The codec key of this test process (the worker child processes get it through PGHA_CODEC_KEY). */
export const testCodecKey = randomBytes(32);
export const testCodec = new AesGcmCodec(testCodecKey);

let runtimeInstalled = false;
/**
 * Worker logs at WARN (set PGHA_TEST_LOG=INFO to see every workflow log line). With `prometheus`
 * (host:port), the process's workers serve their metrics there, as workers/main.ts does on
 * PGHA_METRICS_ADDRESS: call it first (the runtime is installed once per process).
 */
export function installTestRuntime(opts: { prometheus?: string } = {}): void {
  if (runtimeInstalled) {
    if (opts.prometheus)
      throw new Error('installTestRuntime({ prometheus }) must come before any server or worker');
    return;
  }
  runtimeInstalled = true;
  const level = (process.env.PGHA_TEST_LOG ?? 'WARN') as 'WARN';
  Runtime.install({
    logger: new DefaultLogger(level),
    ...(opts.prometheus
      ? { telemetryOptions: { metrics: { prometheus: { bindAddress: opts.prometheus } } } }
      : {}),
  });
}

export interface TestServerOptions {
  /** Serve the Web UI on this port (off by default: only test/workflow/web-ui.test.ts looks at it). */
  uiPort?: number;
  /** The Web UI decodes payloads and summaries through this codec server (`pgha codec-server`). */
  uiCodecEndpoint?: string;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestWorkflowEnvironment> {
  installTestRuntime();
  // In a full run the server keeps its database in the run's artifacts, with this process's codec
  // key beside it: the secrets scan (test/workflow/zz-secrets-scan.test.ts) reads them all at the end.
  const db = testArtifact(`temporal-${process.pid}-${randomUUID().slice(0, 8)}.db`);
  const key = testArtifact(`codec-${process.pid}.key`);
  if (key) writeFileSync(key, testCodecKey.toString('base64'), { mode: 0o600 });
  return TestWorkflowEnvironment.createLocal({
    server: {
      ...(db ? { dbFilename: db } : {}),
      executable: { type: 'existing-path', path: temporalBinary },
      ip: '127.0.0.1',
      searchAttributes: searchAttributeKeys,
      log: { format: 'pretty', level: 'error' },
      ...(opts.uiPort ? { ui: true, uiPort: opts.uiPort } : {}),
      ...(opts.uiCodecEndpoint ? { extraArgs: ['--ui-codec-endpoint', opts.uiCodecEndpoint] } : {}),
    },
    client: { dataConverter: pghaDataConverter(testCodec) },
  });
}

/**
 * The test workflows (test/helpers/workflows.ts, which re-exports every pgha workflow), bundled once:
 * by scripts/test for the whole run (PGHA_TEST_BUNDLE), else once per process.
 */
let bundle: Promise<{ code: string }> | undefined;
export function testBundle(): Promise<{ code: string }> {
  const prebuilt = process.env.PGHA_TEST_BUNDLE;
  if (prebuilt) bundle ??= readFile(prebuilt, 'utf8').then((code) => ({ code }));
  bundle ??= bundleWorkflowCode({
    workflowsPath: require.resolve('./workflows'),
    failureConverterPath: require.resolve('../../converter/failure-converter'),
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error },
  });
  return bundle;
}

export async function createTestWorker(
  env: TestWorkflowEnvironment,
  opts: Partial<WorkerOptions> & { taskQueue: string },
): Promise<Worker> {
  return Worker.create({
    connection: env.nativeConnection,
    namespace: env.namespace ?? 'default',
    workflowBundle: await testBundle(),
    dataConverter: pghaDataConverter(testCodec),
    ...opts,
  });
}

export const uniqueId = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

/** Polls `get` until `ok` holds (bounded); returns the last value. */
export async function eventually<T>(
  what: string,
  get: () => Promise<T>,
  ok: (v: T) => boolean,
  timeoutMs = 20_000,
): Promise<T> {
  let last: T | undefined;
  await waitFor(what, timeoutMs, async () => {
    last = await get();
    return ok(last);
  }).catch((err: Error) => {
    throw new Error(`${err.message}; last value: ${JSON.stringify(last)}`);
  });
  return last as T;
}

/** The summaries the activities of a run were scheduled with, in order, decoded with this process's key. */
export async function activitySummaries(handle: { fetchHistory(): Promise<{ events?: unknown[] | null }> }) {
  const out: string[] = [];
  for (const e of ((await handle.fetchHistory()).events ?? []) as {
    activityTaskScheduledEventAttributes?: unknown;
    userMetadata?: { summary?: Parameters<typeof testCodec.decode>[0][number] | null } | null;
  }[]) {
    const s = e.activityTaskScheduledEventAttributes ? e.userMetadata?.summary : undefined;
    if (s) out.push(defaultPayloadConverter.fromPayload<string>((await testCodec.decode([s]))[0]!));
  }
  return out;
}

/** The activity types a run scheduled, in order (a dry run's test: only read-only looks). */
export async function scheduledActivityTypes(handle: {
  fetchHistory(): Promise<{ events?: unknown[] | null }>;
}): Promise<string[]> {
  return (
    ((await handle.fetchHistory()).events ?? []) as {
      activityTaskScheduledEventAttributes?: { activityType?: { name?: string | null } | null } | null;
    }[]
  )
    .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name)
    .filter((n): n is string => Boolean(n));
}
