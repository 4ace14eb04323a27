/**
 * How every pgha client reaches Temporal: the connection from temporal.config.ts (envconfig: env vars,
 * profiles, TLS, API keys; default the local dev server) and pgha's data converter (the AES-GCM
 * payload codec + encoded failure messages).
 */
import { Client, Connection } from '@temporalio/client';
import type { PayloadCodec } from '@temporalio/common';
import { temporalConnectConfig } from '../temporal.config';
import { createCodec, pghaDataConverter } from './codec';
import { clientIdentity } from './operator';

export interface ConnectOptions {
  /** Default: the configured key (PGHA_CODEC_KEY or .pgha/codec.key). */
  codec?: PayloadCodec;
}

/** A connected Client; close it with `client.connection.close()` (or use withClient). */
export async function connectClient(opts: ConnectOptions = {}): Promise<Client> {
  const codec = opts.codec ?? createCodec(); // before connecting: a missing key is the clearer error
  const cfg = temporalConnectConfig();
  const address = cfg.connectionOptions.address;
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...cfg.connectionOptions, connectTimeout: '10s' });
  } catch (err) {
    throw new Error(
      `cannot reach Temporal at ${address} (namespace ${cfg.namespace}): ${(err as Error).message}. ` +
        `Start the dev server with \`npm run server\`, or set TEMPORAL_ADDRESS / TEMPORAL_PROFILE`,
    );
  }
  // The identity names the operator: the history says who started, signalled, approved or cancelled.
  return new Client({
    connection,
    namespace: cfg.namespace,
    dataConverter: pghaDataConverter(codec),
    identity: clientIdentity(),
  });
}

/** Runs `fn` with a client and always closes the connection. */
export async function withClient<T>(
  fn: (client: Client) => Promise<T>,
  opts: ConnectOptions = {},
): Promise<T> {
  const client = await connectClient(opts);
  try {
    return await fn(client);
  } finally {
    await client.connection.close();
  }
}
