/**
 * A stand-in for one Patroni member's REST API on 127.0.0.1 (node:http), for unit tests of
 * activities/patroni.ts and for HAProxy's health checks in the haproxy tests. Its answers are the
 * documents of Patroni's REST API documentation (docs/rest_api.rst, v3.3.0 and v4.x examples);
 * the status codes follow api.py: GET /primary is 200 only on the primary, /replica only on a
 * running replica, 503 otherwise; unsafe endpoints need Basic auth when a password is set (401
 * otherwise, like Patroni's check_access). Real Patroni is exercised by the lab's e2e tests.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FakeRole = 'primary' | 'replica' | 'stopped';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface FakeRoute {
  status: number;
  body: unknown;
  /** Delay before answering; 'hang' never answers (a stuck member). */
  delayMs?: number | 'hang';
  /** Close the connection without an answer, once (then the route is removed). */
  resetOnce?: boolean;
}

/** GET /patroni of a Patroni 3.x primary, as in the v3.3.0 documentation (role `master`). */
export function docPrimaryV3(name = 'pg103', replicas = ['pg102', 'pg104']) {
  return {
    state: 'running',
    postmaster_start_time: '2023-08-18 11:03:37.966359+00:00',
    role: 'master',
    server_version: 150004,
    xlog: { location: 67395656 },
    timeline: 1,
    replication: replicas.map((r, i) => ({
      usename: 'replicator',
      application_name: r,
      client_addr: `10.89.0.${6 + i}`,
      state: 'streaming',
      sync_state: 'async',
      sync_priority: 0,
    })),
    dcs_last_seen: 1692356718,
    tags: { clonefrom: true },
    database_system_identifier: '7268616322854375442',
    patroni: { version: '3.3.0', scope: 'postgres', name },
  };
}

/** GET /patroni of a Patroni 4.x replica, as in the current documentation. */
export function docReplicaV4(name = 'pg102') {
  return {
    state: 'running',
    postmaster_start_time: '2024-08-28 19:39:26.352526+00:00',
    role: 'replica',
    server_version: 160004,
    xlog: {
      received_location: 67419744,
      replayed_location: 67419744,
      replayed_timestamp: null,
      paused: false,
    },
    timeline: 1,
    dcs_last_seen: 1692356928,
    tags: { clonefrom: true },
    database_system_identifier: '7268616322854375442',
    patroni: { version: '4.0.0', scope: 'postgres', name },
  };
}

/** GET /cluster as documented (leader `running`, replica `streaming` with lag). */
export function docCluster(replicaState = 'streaming') {
  return {
    members: [
      {
        name: 'pg103',
        role: 'leader',
        state: 'running',
        api_url: 'http://10.213.50.22:8008/patroni',
        host: '10.213.50.22',
        port: 5432,
        timeline: 5,
        tags: { clonefrom: true },
      },
      {
        name: 'pg102',
        role: 'replica',
        state: replicaState,
        api_url: 'http://10.213.50.21:8008/patroni',
        host: '10.213.50.21',
        port: 5432,
        timeline: 5,
        tags: { clonefrom: true },
        lag: 0,
      },
      {
        name: 'pg104',
        role: 'replica',
        state: replicaState,
        api_url: 'http://10.213.50.23:8008/patroni',
        host: '10.213.50.23',
        port: 5432,
        timeline: 5,
        tags: { nofailover: true },
        lag: 'unknown',
      },
    ],
    scope: 'postgres',
  };
}

/** GET /history as documented. */
export const docHistory = [
  [1, 25623960, 'no recovery target specified', '2019-09-23T16:57:57+02:00'],
  [2, 25624344, 'no recovery target specified', '2019-09-24T09:22:33+02:00'],
];

export class FakePatroni {
  readonly requests: RecordedRequest[] = [];
  /** Exact `METHOD /path?query` → answer; overrides the role-based answers. */
  readonly routes = new Map<string, FakeRoute>();
  role: FakeRole;
  name: string;
  /** When set, unsafe methods need `Authorization: Basic base64(user:password)`. */
  auth?: { username: string; password: string };
  private server?: Server;
  private hung = new Set<ServerResponse>();
  port = 0;

  /** Loopback address to listen on (e.g. 127.0.0.21 to stand in for a CT's address). */
  readonly host: string;

  constructor(
    opts: {
      name?: string;
      role?: FakeRole;
      auth?: { username: string; password: string };
      host?: string;
      port?: number;
    } = {},
  ) {
    this.name = opts.name ?? 'pg103';
    this.role = opts.role ?? 'primary';
    this.auth = opts.auth;
    this.host = opts.host ?? '127.0.0.1';
    this.port = opts.port ?? 0;
  }

  get url(): string {
    return `http://${this.host}:${this.port}`;
  }

  private nodeStatus() {
    if (this.role === 'primary') return docPrimaryV3(this.name);
    if (this.role === 'replica') return docReplicaV4(this.name);
    return {
      state: 'stopped',
      role: 'replica',
      patroni: { version: '3.3.0', scope: 'postgres', name: this.name },
    };
  }

  private answer(method: string, path: string, headers: IncomingMessage['headers']): FakeRoute {
    const route = this.routes.get(`${method} ${path}`);
    if (route) return route;
    if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS' && this.auth) {
      const want = `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`).toString('base64')}`;
      if (headers.authorization === undefined) return { status: 401, body: 'no auth header received' };
      if (headers.authorization !== want) return { status: 401, body: 'not authenticated' };
    }
    const base = path.split('?')[0];
    const status = this.nodeStatus();
    switch (`${method} ${base}`) {
      case 'GET /patroni':
        return { status: 200, body: status };
      case 'GET /':
      case 'GET /primary':
      case 'GET /master':
      case 'GET /read-write':
        return { status: this.role === 'primary' ? 200 : 503, body: status };
      case 'GET /replica':
        return { status: this.role === 'replica' ? 200 : 503, body: status };
      case 'GET /health':
        return { status: this.role === 'stopped' ? 503 : 200, body: status };
      case 'GET /cluster':
        return { status: 200, body: docCluster() };
      case 'GET /history':
        return { status: 200, body: docHistory };
      case 'GET /config':
        return {
          status: 200,
          body: { ttl: 60, loop_wait: 10, retry_timeout: 20, maximum_lag_on_failover: 1048576 },
        };
      case 'POST /reload':
        return { status: 202, body: 'reload scheduled' };
      case 'POST /switchover':
        return { status: 200, body: 'Successfully switched over to "pg102"' };
      default:
        return { status: 404, body: '' };
    }
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const method = req.method ?? 'GET';
        const path = req.url ?? '/';
        this.requests.push({ method, path, headers: req.headers, body: Buffer.concat(chunks).toString() });
        const a = this.answer(method, path, req.headers);
        if (a.resetOnce) {
          this.routes.delete(`${method} ${path}`);
          req.socket.destroy();
          return;
        }
        const send = () => {
          const isText = typeof a.body === 'string';
          const payload = isText ? (a.body as string) : JSON.stringify(a.body);
          res.writeHead(a.status, { 'content-type': isText ? 'text/html' : 'application/json' });
          res.end(method === 'HEAD' || method === 'OPTIONS' ? undefined : payload);
        };
        if (a.delayMs === 'hang') this.hung.add(res);
        else if (a.delayMs) setTimeout(send, a.delayMs);
        else send();
      });
    });
    await new Promise<void>((ok, fail) => {
      this.server!.once('error', fail);
      this.server!.listen(this.port, this.host, ok);
    });
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const r of this.hung) r.destroy();
    this.hung.clear();
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((ok) => s.close(() => ok()));
    this.server = undefined;
  }
}
