/**
 * The codec server (`pgha codec-server`): Temporal's remote codec protocol over HTTP, so the Web UI
 * and `temporal --codec-endpoint` show payloads to someone holding the key. The codec itself and the
 * data converter live in converter/ (the worker uses them too; workers/ never imports clients/);
 * they are re-exported here for the clients.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';

export * from '../converter/codec';

// ---- codec server: Temporal's remote codec protocol, for the Web UI and `temporal --codec-endpoint` ----

interface JsonPayload {
  metadata?: Record<string, string> | null;
  data?: string | null;
}
const fromJson = (p: JsonPayload): Payload => ({
  metadata: Object.fromEntries(
    Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]),
  ),
  data: Buffer.from(p.data ?? '', 'base64'),
});
const toJson = (p: Payload): JsonPayload => ({
  metadata: Object.fromEntries(
    Object.entries(p.metadata ?? {}).map(([k, v]) => [
      k,
      Buffer.from(v ?? new Uint8Array()).toString('base64'),
    ]),
  ),
  data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
});

export interface CodecServerOptions {
  codec: PayloadCodec;
  host?: string;
  port?: number;
  /** Browser origins allowed by CORS (default: the dev server's Web UI, http://127.0.0.1:8233 and localhost). */
  origins?: string[];
  maxBodyBytes?: number;
}

export const defaultCodecOrigins = ['http://127.0.0.1:8233', 'http://localhost:8233'];

/**
 * Serves POST /encode and POST /decode ({ payloads: [...] } in proto JSON) with CORS for the Web UI.
 * Requests with an Origin not in the list are refused (403); requests without one (CLI, curl) are served.
 */
export async function startCodecServer(opts: CodecServerOptions): Promise<{ server: Server; url: string }> {
  const origins = new Set(opts.origins ?? defaultCodecOrigins);
  const maxBody = opts.maxBodyBytes ?? 16 * 1024 * 1024;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!origins.has(origin)) {
        res
          .writeHead(403, { 'content-type': 'text/plain' })
          .end(`origin ${origin} is not allowed (use --origin)\n`);
        return;
      }
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-allow-credentials', 'true');
      res.setHeader('vary', 'Origin');
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'access-control-allow-methods': 'POST, OPTIONS',
        'access-control-allow-headers': 'Content-Type, X-Namespace, Authorization',
        'access-control-max-age': '600',
      });
      res.end();
      return;
    }
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'POST' || (path !== '/encode' && path !== '/decode')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('POST /encode or /decode\n');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > maxBody) {
        res.writeHead(413, { 'content-type': 'text/plain' }).end('body too large\n');
        return;
      }
      chunks.push(chunk as Buffer);
    }
    let payloads: Payload[];
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { payloads?: JsonPayload[] };
      if (!Array.isArray(body.payloads)) throw new Error('body must be { "payloads": [...] }');
      payloads = body.payloads.map(fromJson);
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
      return;
    }
    try {
      const out = path === '/encode' ? await opts.codec.encode(payloads) : await opts.codec.decode(payloads);
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ payloads: out.map(toJson) }));
    } catch (err) {
      // A wrong key or a tampered payload: say so, without any payload content.
      res.writeHead(422, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${err instanceof Error ? err.message : String(err)}\n`);
    });
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 8888, host, () => ok());
  });
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://${host}:${port}` };
}
