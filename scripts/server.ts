/**
 * The local Temporal dev server (Temporal CLI built by scripts/bootstrap), as pgha expects it:
 * state in .pgha/temporal.db (history survives a restart), gRPC on 127.0.0.1:7233, Web UI on
 * http://127.0.0.1:8233, pgha's search attributes registered (also on an existing database, where
 * start-dev's --search-attribute would not add new ones).
 *
 *   npm run server                         start in the foreground (Ctrl-C stops it)
 *   tsx scripts/server.ts start --background   start detached (log .pgha/server.log, pid .pgha/server.pid)
 *   tsx scripts/server.ts stop | status
 *   ... start --ui-codec-endpoint http://127.0.0.1:8888   let the Web UI decode through `pgha codec-server`
 *
 * Every wait is bounded: readiness within --timeout seconds (default 60).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import {
  devServer,
  searchAttributeNames,
  searchAttributeTypes,
  stateDir,
  temporalBinary,
} from '../temporal.config';

// Ports may be moved (tests, a second instance) with PGHA_SERVER_PORT / PGHA_UI_PORT; clients then need
// TEMPORAL_ADDRESS=127.0.0.1:<port>.
const port = Number(process.env.PGHA_SERVER_PORT ?? devServer.port);
const uiPort = Number(process.env.PGHA_UI_PORT ?? devServer.uiPort);
const uiUrl = `http://${devServer.ip}:${uiPort}`;
const address = `${devServer.ip}:${port}`;
const pidFile = join(stateDir, 'server.pid');
const logFile = join(stateDir, 'server.log');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function serverArgs(codecEndpoint?: string): string[] {
  const args = [
    'server',
    'start-dev',
    '--db-filename',
    devServer.dbFile,
    '--ip',
    devServer.ip,
    '--port',
    String(port),
    '--ui-port',
    String(uiPort),
    '--log-level',
    'warn',
  ];
  for (const name of searchAttributeNames)
    args.push('--search-attribute', `${name}=${searchAttributeTypes[name] ?? 'Keyword'}`);
  if (codecEndpoint) args.push('--ui-codec-endpoint', codecEndpoint);
  return args;
}

/** The pid from .pgha/server.pid if that process is alive and is a temporal dev server. */
function runningPid(): number | undefined {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmdline.includes('start-dev')) return pid;
  } catch {
    // not running
  }
  return undefined;
}

/** True when something accepts TCP connections on the gRPC port (a cheap first look). */
function portOpen(): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: devServer.ip, port, timeout: 500 });
    const done = (open: boolean) => {
      sock.destroy();
      resolve(open);
    };
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
    sock.once('timeout', () => done(false));
  });
}

/** Connects, checks the server answers, and registers any missing pgha search attribute. */
async function ready(): Promise<boolean> {
  if (!(await portOpen())) return false;
  let conn: Connection | undefined;
  try {
    conn = await Connection.connect({ address, connectTimeout: '2s' });
    await conn.workflowService.getSystemInfo({});
    const have = await conn.operatorService.listSearchAttributes({ namespace: 'default' });
    const missing = searchAttributeNames.filter((n) => !(n in (have.customAttributes ?? {})));
    if (missing.length) {
      await conn.operatorService.addSearchAttributes({
        namespace: 'default',
        searchAttributes: Object.fromEntries(
          missing.map((n) => [
            n,
            searchAttributeTypes[n] === 'KeywordList'
              ? temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST
              : temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
          ]),
        ),
      });
      console.log(`registered search attributes: ${missing.join(', ')}`);
    }
    return true;
  } catch {
    return false;
  } finally {
    await conn?.close();
  }
}

async function waitReady(timeoutS: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutS * 1000;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`the dev server exited during start-up; see ${logFile}`);
    if (await ready()) return;
    await sleep(500);
  }
  throw new Error(`the dev server did not answer on ${address} within ${timeoutS}s; see ${logFile}`);
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(argv: string[]): Promise<number> {
  const [cmd = 'start', ...rest] = argv;
  const timeoutS = Number(flag(rest, '--timeout') ?? 60);
  if (!existsSync(temporalBinary)) {
    console.error(`${temporalBinary} is missing: run scripts/bootstrap (npm run bootstrap)`);
    return 1;
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });

  if (cmd === 'status') {
    const pid = runningPid();
    const answers = await ready();
    console.log(
      answers
        ? `running${pid ? ` (pid ${pid})` : ' (not started by this script)'}: ${address}, Web UI ${uiUrl}`
        : `not running${pid ? ` (pid ${pid} alive but not answering)` : ''}`,
    );
    return answers ? 0 : 3;
  }

  if (cmd === 'stop') {
    const pid = runningPid();
    if (!pid) {
      console.log('not running (no live pid in .pgha/server.pid)');
      rmSync(pidFile, { force: true });
      return 0;
    }
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 60 && runningPid(); i++) await sleep(250);
    if (runningPid()) {
      console.error(`pid ${pid} did not stop within 15s after SIGTERM; sending SIGKILL`);
      process.kill(pid, 'SIGKILL');
    }
    rmSync(pidFile, { force: true });
    console.log(`stopped (pid ${pid})`);
    return 0;
  }

  if (cmd !== 'start') {
    console.error(
      'usage: tsx scripts/server.ts start [--background] [--ui-codec-endpoint URL] [--timeout S] | stop | status',
    );
    return 2;
  }
  const running = runningPid();
  if (running || (await ready())) {
    console.log(`already running${running ? ` (pid ${running})` : ''} on ${address}`);
    return rest.includes('--background') ? 0 : 1;
  }
  const args = serverArgs(flag(rest, '--ui-codec-endpoint'));

  if (rest.includes('--background')) {
    const out = openSync(logFile, 'a');
    const child = spawn(temporalBinary, args, { detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    writeFileSync(pidFile, `${child.pid}\n`);
    child.unref();
    let exited = false;
    child.once('exit', () => (exited = true));
    await waitReady(timeoutS, () => !exited);
    console.log(
      `Temporal dev server running (pid ${child.pid}): ${address}, Web UI ${uiUrl}, log ${logFile}`,
    );
    return 0;
  }

  const child = spawn(temporalBinary, args, { stdio: 'inherit' });
  writeFileSync(pidFile, `${child.pid}\n`);
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  let exited = false;
  const done = new Promise<number>((r) =>
    child.once('exit', (code, signal) => {
      exited = true;
      r(code ?? (signal === 'SIGINT' || signal === 'SIGTERM' ? 0 : 1));
    }),
  );
  waitReady(timeoutS, () => !exited).then(
    () => console.log(`pgha: Temporal dev server ready on ${address}; Web UI ${uiUrl}; Ctrl-C stops it`),
    (err: Error) => {
      console.error(`pgha: ${err.message}`);
      child.kill('SIGTERM');
    },
  );
  const code = await done;
  rmSync(pidFile, { force: true });
  return code;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
