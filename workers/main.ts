/**
 * The pgha worker: polls task queue `pgha`, runs every runbook (workflows/index.ts) and every
 * activity (activities/index.ts, with real clients). `npm run worker`.
 *
 * - Connection from temporal.config.ts (envconfig; default the local dev server).
 * - Payloads encrypted with the codec key (PGHA_CODEC_KEY or .pgha/codec.key); failure messages encoded.
 * - Workflow code: bundled at start from workflows/ (dev), or the prebuilt bundle named by
 *   PGHA_WORKFLOW_BUNDLE (production: `npm run bundle` writes .pgha/workflow-bundle.js).
 * - Graceful shutdown on SIGTERM/SIGINT (the SDK's runtime stops polling, lets activities in flight
 *   finish within shutdownGraceTime, then run() returns); the connection is closed in finally.
 * - Prometheus metrics on PGHA_METRICS_ADDRESS (default 127.0.0.1:9464, `off` to disable).
 */
import { existsSync } from 'node:fs';
import { NativeConnection, Runtime, Worker } from '@temporalio/worker';
import type { WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import { createCodec, pghaDataConverter } from '../converter/codec';
import { stateDir, taskQueue, temporalConnectConfig } from '../temporal.config';

export const workflowsPath = require.resolve('../workflows');

/** Where the workflow code comes from: a prebuilt bundle (PGHA_WORKFLOW_BUNDLE) or workflows/. */
export function workflowSource(): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  const bundle = process.env.PGHA_WORKFLOW_BUNDLE;
  if (bundle) {
    if (!existsSync(bundle)) {
      throw new Error(`PGHA_WORKFLOW_BUNDLE=${bundle} does not exist: build it with \`npm run bundle\``);
    }
    return { workflowBundle: { codePath: bundle } };
  }
  return { workflowsPath };
}

export interface RunWorkerOptions {
  /** Default: createActivities with the real clients. Tests pass wrapped or fake ones. */
  activities?: object;
  /** Called once the worker polls. */
  onReady?: (info: { address: string; namespace: string; taskQueue: string }) => void;
}

export async function runWorker(opts: RunWorkerOptions = {}): Promise<void> {
  const codec = createCodec(); // a missing or unsafe key stops the worker before it connects
  const cfg = temporalConnectConfig();
  const address = String(cfg.connectionOptions.address);
  const namespace = cfg.namespace ?? 'default';
  const connection = await NativeConnection.connect(cfg.connectionOptions).catch((err: Error) => {
    throw new Error(`cannot reach Temporal at ${address}: ${err.message}. Start it with \`npm run server\``);
  });
  try {
    const worker = await Worker.create({
      connection,
      namespace,
      taskQueue,
      ...workflowSource(),
      activities: opts.activities ?? createActivities({ stateDir }),
      dataConverter: pghaDataConverter(codec),
      shutdownGraceTime: '30s',
    });
    opts.onReady?.({ address, namespace, taskQueue });
    await worker.run();
  } finally {
    await connection.close();
  }
}

function installRuntime(): string | undefined {
  const bind = process.env.PGHA_METRICS_ADDRESS ?? '127.0.0.1:9464';
  if (bind === 'off' || bind === '') return undefined;
  Runtime.install({ telemetryOptions: { metrics: { prometheus: { bindAddress: bind } } } });
  return bind;
}

if (require.main === module) {
  const metrics = installRuntime();
  runWorker({
    onReady: (i) =>
      console.log(
        `pgha worker: task queue ${i.taskQueue} on ${i.address} (namespace ${i.namespace})` +
          `${metrics ? `; metrics http://${metrics}/metrics` : ''}; stop with Ctrl-C / SIGTERM`,
      ),
  }).then(
    () => console.log('pgha worker stopped'),
    (err: unknown) => {
      console.error(`pgha worker: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    },
  );
}
