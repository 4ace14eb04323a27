/**
 * One typed configuration for everything that talks to Temporal: the worker, the `pgha` CLI and the
 * tests. The connection comes from @temporalio/envconfig, so TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
 * TEMPORAL_PROFILE, TLS and API keys behave exactly as they do for the `temporal` CLI. With nothing
 * set, it is the local dev server that `npm run server` starts.
 */
import path from 'node:path';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { ClientConnectConfig } from '@temporalio/envconfig';

export const projectRoot = __dirname;

/** The task queue every pgha worker polls and every runbook is started on. */
export const taskQueue = process.env.PGHA_TASK_QUEUE ?? 'pgha';

/** pgha's custom search attributes (all Keyword); registered by `npm run server`. */
export const searchAttributeNames = [
  'PgCluster',
  'PgOperation',
  'PgNode',
  'PgStep',
  'PgOutcome',
  'PgOperator',
] as const;
/** Their types, in the dev server's words (`--search-attribute Name=Type`); the rest are Keyword. */
export const searchAttributeTypes: Partial<Record<(typeof searchAttributeNames)[number], 'KeywordList'>> = {
  PgOperator: 'KeywordList',
};

/** The Temporal CLI (dev server + Web UI) built from its Go module by scripts/bootstrap. */
export const temporalVersion = 'v1.5.1';
export const toolsDir = process.env.PGHA_TOOLS ?? path.join(projectRoot, '.tools');
export const temporalBinary =
  process.env.PGHA_TEMPORAL_BIN ?? path.join(toolsDir, `temporal-${temporalVersion}`, 'bin', 'temporal');

/** Local state of the dev server (history survives a restart) and of the CLI. */
export const stateDir = process.env.PGHA_STATE_DIR ?? path.join(projectRoot, '.pgha');
export const devServer = {
  dbFile: path.join(stateDir, 'temporal.db'),
  ip: '127.0.0.1',
  port: 7233,
  uiPort: 8233,
  uiUrl: 'http://127.0.0.1:8233',
};

/**
 * Where the payload codec key comes from: PGHA_CODEC_KEY (base64, 32 bytes) or the 0600 key file
 * PGHA_CODEC_KEY_FILE (default .pgha/codec.key, written by `pgha keygen`).
 */
export const codecKeySource = {
  env: 'PGHA_CODEC_KEY',
  fileEnv: 'PGHA_CODEC_KEY_FILE',
  defaultFile: path.join(stateDir, 'codec.key'),
};

/** The Temporal connection for clients and workers, from env vars / profiles; defaults to the dev server. */
export function temporalConnectConfig(): ClientConnectConfig {
  const cfg = loadClientConnectConfig();
  cfg.connectionOptions.address ??= `${devServer.ip}:${devServer.port}`;
  return { ...cfg, namespace: cfg.namespace ?? 'default' };
}
