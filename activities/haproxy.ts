/**
 * HAProxy's runtime API (the admin stats socket): read every server's state, and drain / maint /
 * ready a server at once instead of waiting for health checks to notice. The seed reads the stats
 * page with curl; pgha uses the socket, reached through an injected runner.
 *
 * The runner sends one command to one HAProxy node and returns its answer. On Proxmox it is
 * `pct exec <vmid> -- socat stdio unix-connect:<socket>` with the command on stdin, built from argv
 * by activities/command.ts via activities/proxmox.ts (see `socatArgv`); in tests it is socat on a
 * local socket. Names that reach the runtime API are validated: the API treats `;` and newlines as
 * command separators, so a backend called `x; shutdown frontend y` must never get through.
 *
 * Pitfall (measured): after `state maint`, a later `state ready` marks a server UP at once even if
 * its health check would fail, until the next check — gate `ready` on that member's own Patroni
 * `/primary` answering 200 (the caller's job; see the switchover runbook).
 */
import { pollUntil } from './poll';

/** One HAProxy node: the name to report, the CT that runs it, its admin socket. */
export interface HaproxyNode {
  name: string;
  vmid?: number;
  /** Admin socket path inside the node. Default /run/haproxy/admin.sock */
  socket?: string;
}

export type HaproxyRuntimeRunner = (
  node: HaproxyNode,
  command: string,
  opts: { timeoutMs: number },
) => Promise<string>;

export interface HaproxyDeps {
  runner: HaproxyRuntimeRunner;
  /** Per-command deadline handed to the runner. Default 5000 ms. */
  timeoutMs?: number;
}

export type HaproxyRowType = 'frontend' | 'backend' | 'server' | 'listener';

export interface HaproxyStatRow {
  /** pxname: the backend (or frontend/listen section) name. */
  backend: string;
  /** svname: the server name, or FRONTEND / BACKEND for the aggregate rows. */
  server: string;
  type: HaproxyRowType;
  /** As HAProxy prints it: UP, DOWN, MAINT, DRAIN, NOLB, `UP 1/2` (going down), `DOWN 1/2` (going up), `no check`... */
  status: string;
  /** UP | DOWN | MAINT | DRAIN | NOLB | OPEN | unknown: the first word, transitions folded in. */
  state: string;
  /** check_status without the in-progress marker: L7OK, L7STS, L4CON, L4TOUT, INI, ... ('' when none). */
  checkStatus: string;
  checkCode?: number;
  lastChangeS?: number;
  addr?: string;
  currentSessions?: number;
}

export type HaproxyAdminState = 'ready' | 'drain' | 'maint';

/** The default location of the admin socket in pgha's rendered haproxy.cfg. */
export const DEFAULT_ADMIN_SOCKET = '/run/haproxy/admin.sock';

/** argv that, run inside the node (e.g. after `pct exec <vmid> --`), connects stdin to the admin socket. */
export function socatArgv(node: HaproxyNode): string[] {
  const socket = node.socket ?? DEFAULT_ADMIN_SOCKET;
  if (!/^\/[A-Za-z0-9_./-]+$/.test(socket)) {
    throw new TypeError(
      `haproxy node ${node.name}: socket ${JSON.stringify(socket)} must be an absolute path`,
    );
  }
  // shut-none: socat does not half-close the socket at stdin's EOF; HAProxy answers the one
  // command and closes. (A half-close racing the command can cost the answer under load.)
  return ['socat', '-t', '5', 'stdio', `unix-connect:${socket},shut-none`];
}

/** The slice of the Proxmox transport a runner needs (activities/proxmox.ts / nodes.ts CtShell has it). */
export interface CtExec {
  exec(
    vmid: number,
    argv: string[],
    opts?: { stdin?: string; timeoutMs?: number },
  ): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** The production runner: `pct exec <vmid> -- socat ... unix-connect:<socket>`, the command on stdin. */
export function runnerFromCtExec(shell: CtExec): HaproxyRuntimeRunner {
  return async (node, command, { timeoutMs }) => {
    if (node.vmid === undefined)
      throw new TypeError(`haproxy node ${node.name}: no vmid to run the runtime API command in`);
    const r = await shell.exec(node.vmid, socatArgv(node), { stdin: `${command}\n`, timeoutMs });
    if (r.code !== 0) {
      throw new Error(
        `haproxy ${node.name} (CT ${node.vmid}): socat to the admin socket exited ${r.code}: ${r.stderr.trim().slice(0, 300)}`,
      );
    }
    return r.stdout;
  };
}

// ---------------------------------------------------------------------------------------------
// Interactive runtime sessions: `prompt` mode keeps one admin-socket session open (each answer
// ends with "\n> "), so a command costs ~1 ms instead of a fresh `pct exec` (~75 ms). For the
// switchover's critical path, where HAProxy is routed the instant the new leader is writable.

/** One open `prompt`-mode session with one HAProxy node's admin socket. */
export interface RuntimeSession {
  node: string;
  /** One command, its answer (trimmed; '' for a successful `set server`). One at a time. */
  command(cmd: string, timeoutMs?: number): Promise<string>;
  close(): void;
}

/** A session per HAProxy node of a cluster. */
export interface RuntimeSessions {
  sessions: RuntimeSession[];
  close(): void;
  /** Nodes left out because their CT is stopped (see openRuntimeSessions' `isDown`). */
  down?: string[];
}

/** The byte stream a session runs over: `pct exec <vmid> -- socat ...` kept open (proxmox openSession). */
export interface RuntimeStream {
  on(event: 'data', fn: (d: Buffer) => void): unknown;
  on(event: 'close', fn: () => void): unknown;
  stderr: { on(event: 'data', fn: (d: Buffer) => void): unknown };
  write(s: string): unknown;
  end(s?: string): unknown;
}

class PromptSession implements RuntimeSession {
  private buf = '';
  private waiter?: { resolve: (s: string) => void; reject: (e: Error) => void };
  private dead?: Error;
  constructor(
    readonly node: string,
    private readonly stream: RuntimeStream,
  ) {
    stream.on('data', (d: Buffer) => {
      this.buf += d.toString('utf8');
      this.flush();
    });
    stream.stderr.on('data', () => undefined);
    stream.on('close', () => this.fail(new Error(`haproxy ${node}: runtime session closed`)));
  }
  private flush(): void {
    if (!this.waiter) return;
    const end = this.buf.lastIndexOf('\n> ');
    if (end >= 0 && end + 3 === this.buf.length) {
      const answer = this.buf.slice(0, end).replace(/^\n/, '');
      this.buf = '';
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(answer.trim());
    }
  }
  private fail(err: Error): void {
    this.dead ??= err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }
  command(cmd: string, timeoutMs = 3000): Promise<string> {
    if (this.dead) return Promise.reject(this.dead);
    if (this.waiter) return Promise.reject(new Error(`haproxy ${this.node}: a command is already in flight`));
    if (/[;\n\r]/.test(cmd)) return Promise.reject(new TypeError(`haproxy command with a separator: ${cmd}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`haproxy ${this.node}: no answer to "${cmd}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      try {
        this.stream.write(`${cmd}\n`);
      } catch (err) {
        this.fail(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }
  close(): void {
    try {
      this.stream.end('quit\n');
    } catch {
      // already gone
    }
  }
}

/**
 * Opens a `prompt`-mode session on each node, over the streams `open` gives (production: proxmox.ts
 * execStream of `socatArgv(node)` in the node's CT). All or nothing — a failure closes those opened —
 * except for a node `isDown` confirms is down (its CT stopped) after its session failed: it is left
 * out and named in `down` (a stopped HAProxy routes nothing; started again, it admits only the
 * server whose own `/primary` check passes). At least one session, or an error.
 */
export async function openRuntimeSessions(
  nodes: HaproxyNode[],
  open: (node: HaproxyNode) => Promise<RuntimeStream>,
  onClose?: () => void,
  isDown?: (node: HaproxyNode) => Promise<boolean>,
): Promise<RuntimeSessions> {
  const sessions: RuntimeSession[] = [];
  const down: string[] = [];
  const closeAll = () => {
    for (const s of sessions) s.close();
    onClose?.();
  };
  try {
    for (const node of nodes) {
      let s: PromptSession | undefined;
      try {
        s = new PromptSession(node.name, await open(node));
        await s.command('prompt', 10_000);
        sessions.push(s);
      } catch (err) {
        s?.close();
        if (!(await isDown?.(node).catch(() => false))) throw err;
        down.push(node.name);
      }
    }
    if (sessions.length === 0)
      throw new Error(`haproxy: every HAProxy node is down (${down.join(', ')}): nothing to route through`);
  } catch (err) {
    closeAll();
    throw err;
  }
  return { sessions, close: closeAll, down };
}

/** A server `show servers state` reports in an admin state (srv_admin_state not 0). */
export interface ForcedServer {
  backend: string;
  server: string;
  /** srv_admin_state: bit 0x01 forced maintenance, 0x08 forced drain (others: inherited / config). */
  admin: number;
}

/** HAProxy's maintenance bits of srv_admin_state (forced, inherited, config, resolution, hostname). */
const ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40;

/**
 * The servers of a `show servers state <backend>` answer whose admin state is not 0 (maint, drain ...):
 * fields be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
 */
export function forcedServers(answer: string): ForcedServer[] {
  const out: ForcedServer[] = [];
  for (const line of answer.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 7 || !/^\d+$/.test(f[0]!)) continue;
    if (f[6] !== '0') out.push({ backend: f[1]!, server: f[3]!, admin: Number(f[6]) });
  }
  return out;
}

/** {@link forcedServers} as `backend/server (admin state N)`, for messages. */
export const adminForced = (answer: string): string[] =>
  forcedServers(answer).map((f) => `${f.backend}/${f.server} (admin state ${f.admin})`);

/**
 * The runtime commands that put a forced server back under its health checks, in order. `leads`:
 * whether the member leads now (its own /primary 200), when the caller knows. A drain alone is
 * lifted with `state ready`, which leaves the operational state to the checks. A member that does
 * not lead is forced DOWN first (a `ready` after maintenance marks a server UP at once, until its
 * next check — writes must never reach a replica); so is one in maintenance whose role is unknown.
 * The leader is never forced DOWN (`on-marked-down shutdown-sessions` would cut its clients).
 */
export function settleCommands(f: ForcedServer, leads?: boolean): string[] {
  const at = `set server ${checkName('backend', f.backend)}/${checkName('server', f.server)}`;
  const maint = (f.admin & ADMIN_MAINT) !== 0;
  const down = leads === false || (leads === undefined && maint);
  // Out of maintenance into a drain first: leaving maintenance marks a server UP at once (measured),
  // and a forced health sent while in maintenance does not survive that; drained, it does.
  return [
    ...(maint ? [`${at} state drain`] : []),
    ...(down ? [`${at} health down`] : []),
    `${at} state ready`,
  ];
}

/**
 * One HAProxy node: every server of `backends` left in an admin state put back under its checks
 * ({@link settleCommands}; `leads` says whether a member leads now, when the caller knows), then
 * read back. Returns what it settled (`backend/server`); throws, naming the node and what is still
 * forced, when a server stays so. `command` sends one runtime command to this node.
 */
export async function settleNode(
  node: string,
  command: (cmd: string) => Promise<string>,
  backends: { backend: string; leads?: (server: string) => Promise<boolean | undefined> }[],
): Promise<string[]> {
  const settled: string[] = [];
  const show = (backend: string) => command(`show servers state ${checkName('backend', backend)}`);
  for (const b of backends) {
    for (const f of forcedServers(await show(b.backend))) {
      for (const cmd of settleCommands(f, await b.leads?.(f.server))) {
        const answer = (await command(cmd)).trim();
        if (answer !== '') throw new Error(`haproxy ${node}: ${cmd}: ${answer}`);
      }
      settled.push(`${f.backend}/${f.server}`);
    }
  }
  const left: string[] = [];
  for (const b of backends) left.push(...adminForced(await show(b.backend)));
  if (left.length)
    throw new Error(`haproxy ${node}: still in an admin state after settling: ${left.join(', ')}`);
  return settled;
}

const NAME_RE = /^[A-Za-z0-9_.:-]+$/;

function checkName(kind: string, v: string): string {
  if (typeof v !== 'string' || !NAME_RE.test(v)) {
    throw new TypeError(`haproxy ${kind} ${JSON.stringify(v)}: only letters, digits and _ . : - are allowed`);
  }
  return v;
}

const TYPES: Record<string, HaproxyRowType> = {
  '0': 'frontend',
  '1': 'backend',
  '2': 'server',
  '3': 'listener',
};

/** Parses the CSV answer of `show stat` (first line `# pxname,svname,...`). */
export function parseShowStat(csv: string): HaproxyStatRow[] {
  const lines = csv.split('\n').map((l) => l.replace(/\r$/, ''));
  const headerLine = lines.find((l) => l.startsWith('# '));
  if (!headerLine) {
    throw new Error(`unexpected answer to "show stat" (no CSV header): ${JSON.stringify(csv.slice(0, 200))}`);
  }
  const header = headerLine.slice(2).split(',');
  const col = (name: string) => header.indexOf(name);
  const idx = {
    px: col('pxname'),
    sv: col('svname'),
    status: col('status'),
    check: col('check_status'),
    code: col('check_code'),
    lastchg: col('lastchg'),
    type: col('type'),
    addr: col('addr'),
    scur: col('scur'),
  };
  if (idx.px < 0 || idx.sv < 0 || idx.status < 0)
    throw new Error('"show stat" CSV lacks pxname/svname/status columns');
  const num = (s: string | undefined) => (s === undefined || s === '' ? undefined : Number(s));
  const rows: HaproxyStatRow[] = [];
  for (const line of lines) {
    if (line === '' || line.startsWith('#')) continue;
    const f = line.split(',');
    const status = f[idx.status] ?? '';
    const type =
      TYPES[f[idx.type] ?? ''] ??
      (f[idx.sv] === 'FRONTEND' ? 'frontend' : f[idx.sv] === 'BACKEND' ? 'backend' : 'server');
    const row: HaproxyStatRow = {
      backend: f[idx.px] ?? '',
      server: f[idx.sv] ?? '',
      type,
      status,
      state: stateOf(status),
      checkStatus: (idx.check >= 0 ? (f[idx.check] ?? '') : '').replace(/^\*\s*/, ''),
    };
    const code = idx.code >= 0 ? num(f[idx.code]) : undefined;
    if (code !== undefined) row.checkCode = code;
    const lastchg = idx.lastchg >= 0 ? num(f[idx.lastchg]) : undefined;
    if (lastchg !== undefined) row.lastChangeS = lastchg;
    if (idx.addr >= 0 && f[idx.addr]) row.addr = f[idx.addr];
    const scur = idx.scur >= 0 ? num(f[idx.scur]) : undefined;
    if (scur !== undefined) row.currentSessions = scur;
    rows.push(row);
  }
  return rows;
}

function stateOf(status: string): string {
  const w = status.trim().split(/\s+/)[0]?.toUpperCase() ?? '';
  if (['UP', 'DOWN', 'MAINT', 'DRAIN', 'NOLB', 'OPEN', 'FULL', 'STOP'].includes(w)) return w;
  return 'unknown';
}

export function createHaproxyActivities(deps: HaproxyDeps) {
  const timeoutMs = deps.timeoutMs ?? 5000;

  async function run(node: HaproxyNode, command: string): Promise<string> {
    if (!node || typeof node.name !== 'string' || node.name === '') {
      throw new TypeError('haproxy node: expected { name, vmid?, socket? }');
    }
    return deps.runner(node, command, { timeoutMs });
  }

  /** `show stat`, parsed. Only server rows unless `all`. An empty answer (never valid) is asked again, twice at most. */
  async function haproxyShowStat(args: { node: HaproxyNode; all?: boolean }): Promise<HaproxyStatRow[]> {
    let answer = '';
    for (let attempt = 1; attempt <= 3 && answer.trim() === ''; attempt++)
      answer = await run(args.node, 'show stat');
    const rows = parseShowStat(answer);
    return args.all ? rows : rows.filter((r) => r.type === 'server');
  }

  async function serverRow(node: HaproxyNode, backend: string, server: string): Promise<HaproxyStatRow> {
    const rows = await haproxyShowStat({ node });
    const row = rows.find((r) => r.backend === backend && r.server === server);
    if (!row) {
      const known = rows.map((r) => `${r.backend}/${r.server}`).join(', ') || 'none';
      throw new Error(`haproxy ${node.name}: no server ${backend}/${server} (servers: ${known})`);
    }
    return row;
  }

  /**
   * `set server <backend>/<server> state ready|drain|maint`, idempotent: reads the state first and
   * does nothing when it already is so; reads it again after.
   */
  async function haproxySetServerState(args: {
    node: HaproxyNode;
    backend: string;
    server: string;
    state: HaproxyAdminState;
  }): Promise<{
    node: string;
    backend: string;
    server: string;
    /** Normalised states (UP, DOWN, MAINT, DRAIN ...) before and after. */
    before: string;
    after: string;
    /** HAProxy's own status text after, e.g. `DRAIN 1/2` while a check transition is under way. */
    afterStatus: string;
    changed: boolean;
  }> {
    const backend = checkName('backend', args.backend);
    const server = checkName('server', args.server);
    if (!['ready', 'drain', 'maint'].includes(args.state)) {
      throw new TypeError(`haproxy state ${JSON.stringify(args.state)}: expected ready, drain or maint`);
    }
    const before = await serverRow(args.node, backend, server);
    const already =
      (args.state === 'maint' && before.state === 'MAINT') ||
      (args.state === 'drain' && before.state === 'DRAIN') ||
      (args.state === 'ready' && before.state !== 'MAINT' && before.state !== 'DRAIN');
    if (!already) {
      const answer = (await run(args.node, `set server ${backend}/${server} state ${args.state}`)).trim();
      if (answer !== '')
        throw new Error(
          `haproxy ${args.node.name}: set server ${backend}/${server} state ${args.state}: ${answer}`,
        );
    }
    const after = await serverRow(args.node, backend, server);
    return {
      node: args.node.name,
      backend,
      server,
      before: before.state,
      after: after.state,
      afterStatus: after.status,
      changed: !already,
    };
  }

  /** Bounded wait until a server's state is `want` (UP or DOWN; MAINT counts as DOWN). Heartbeats. */
  async function haproxyWaitServer(args: {
    node: HaproxyNode;
    backend: string;
    server: string;
    want: 'UP' | 'DOWN';
    waitTimeoutMs: number;
    intervalMs?: number;
  }): Promise<HaproxyStatRow> {
    const backend = checkName('backend', args.backend);
    const server = checkName('server', args.server);
    return pollUntil(
      {
        what: `${backend}/${server} ${args.want} on haproxy ${args.node.name}`,
        timeoutMs: args.waitTimeoutMs,
        intervalMs: args.intervalMs ?? 200,
      },
      async () => {
        const row = await serverRow(args.node, backend, server);
        const down = row.state === 'DOWN' || row.state === 'MAINT';
        const done = args.want === 'UP' ? row.state === 'UP' || row.state === 'DRAIN' : down;
        return { done, value: row, describe: `status ${row.status}, check ${row.checkStatus || 'none'}` };
      },
    );
  }

  /**
   * `set server <backend>/<server> health up|stopping|down`: forces the operational state at once,
   * without waiting for `rise`/`fall` checks; the next checks take over again. For routing writes to
   * a just-promoted leader: only after its own Patroni `/primary` answers 200 and PostgreSQL is out of
   * recovery (the caller checks both). Idempotent: nothing is sent when the state already matches.
   */
  async function haproxySetServerHealth(args: {
    node: HaproxyNode;
    backend: string;
    server: string;
    health: 'up' | 'stopping' | 'down';
  }): Promise<{
    node: string;
    backend: string;
    server: string;
    before: string;
    after: string;
    changed: boolean;
  }> {
    const backend = checkName('backend', args.backend);
    const server = checkName('server', args.server);
    if (!['up', 'stopping', 'down'].includes(args.health)) {
      throw new TypeError(`haproxy health ${JSON.stringify(args.health)}: expected up, stopping or down`);
    }
    const before = await serverRow(args.node, backend, server);
    const want = args.health === 'up' ? 'UP' : args.health === 'down' ? 'DOWN' : 'NOLB';
    const already = before.state === want && !/\d+\/\d+/.test(before.status);
    if (!already) {
      const answer = (await run(args.node, `set server ${backend}/${server} health ${args.health}`)).trim();
      if (answer !== '') {
        throw new Error(
          `haproxy ${args.node.name}: set server ${backend}/${server} health ${args.health}: ${answer}`,
        );
      }
    }
    const after = await serverRow(args.node, backend, server);
    return {
      node: args.node.name,
      backend,
      server,
      before: before.state,
      after: after.state,
      changed: !already,
    };
  }

  return { haproxyShowStat, haproxySetServerState, haproxySetServerHealth, haproxyWaitServer };
}

export type HaproxyActivities = ReturnType<typeof createHaproxyActivities>;
