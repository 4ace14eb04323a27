/**
 * A real HAProxy (Debian's haproxy, installed by scripts/test-services) in the foreground, from a
 * test-owned config: frontends bound to 127.0.0.1 on random ports, servers on loopback checked over
 * HTTP (e.g. against a FakePatroni's /primary), and an admin stats socket in a temporary directory.
 * `socatRunner` is the runtime-API runner the tests inject into activities/haproxy.ts.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HaproxyNode, HaproxyRuntimeRunner } from '../../activities/haproxy';
import { socatArgv } from '../../activities/haproxy';
import { Proc, freePort, waitFor } from './local-common';

export interface LocalBackend {
  name: string;
  /** Patroni health endpoint checked over HTTP, e.g. /primary or /replica. */
  check: string;
  servers: { name: string; addr: string; port: number; checkPort: number }[];
  /** Health-check interval (default 200ms). */
  inter?: string;
}

export interface LocalHaproxy {
  node: HaproxyNode;
  /** frontend port per backend name, on 127.0.0.1 */
  ports: Record<string, number>;
  proc: Proc;
  stop(): Promise<void>;
}

function which(bin: string): string {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin').split(':').concat(['/usr/sbin', '/usr/bin'])) {
    const p = join(dir, bin);
    if (existsSync(p)) return p;
  }
  throw new Error(`${bin} is not installed: run scripts/test-services`);
}

/** Runs a runtime-API command through `socat stdio unix-connect:<socket>`, command on stdin. */
export const socatRunner: HaproxyRuntimeRunner = (node, command, { timeoutMs }) =>
  new Promise((resolve, reject) => {
    const [cmd, ...args] = socatArgv(node);
    const child = spawn(which(cmd!), args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`socat to ${node.name} failed (${signal ?? code}): ${err.trim()}`));
    });
    child.stdin.on('error', () => undefined); // socat gone early (no socket): its exit code says why
    child.stdin.end(`${command}\n`);
  });

export async function startLocalHaproxy(opts: {
  name?: string;
  backends: LocalBackend[];
  timeoutMs?: number;
}): Promise<LocalHaproxy> {
  const haproxy = which('haproxy');
  which('socat');
  const dir = await mkdtemp(join(tmpdir(), 'pgha-haproxy-'));
  const socket = join(dir, 'admin.sock');
  const ports: Record<string, number> = {};
  const lines = [
    'global',
    `  stats socket ${socket} mode 600 level admin`,
    '  stats timeout 30s',
    'defaults',
    '  mode tcp',
    '  timeout connect 1s',
    '  timeout client 30s',
    '  timeout server 30s',
    '  timeout check 1s',
  ];
  for (const b of opts.backends) {
    ports[b.name] = await freePort();
    lines.push(
      `listen ${b.name}`,
      `  bind 127.0.0.1:${ports[b.name]}`,
      `  option httpchk GET ${b.check}`,
      '  http-check expect status 200',
      `  default-server inter ${b.inter ?? '200ms'} fall 2 rise 1 on-marked-down shutdown-sessions`,
      ...b.servers.map((s) => `  server ${s.name} ${s.addr}:${s.port} check port ${s.checkPort}`),
    );
  }
  const cfg = join(dir, 'haproxy.cfg');
  await writeFile(cfg, `${lines.join('\n')}\n`);
  const check = spawn(haproxy, ['-c', '-f', cfg], { stdio: 'pipe' });
  const checkCode = await new Promise<number | null>((r) => check.once('exit', r));
  if (checkCode !== 0) throw new Error(`haproxy -c rejected the test config (exit ${checkCode})`);
  const proc = new Proc(opts.name ?? 'haproxy1', haproxy, ['-db', '-f', cfg]);
  const node: HaproxyNode = { name: opts.name ?? 'haproxy1', socket };
  const stop = async () => {
    await proc.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(`local haproxy admin socket ${socket}`, opts.timeoutMs ?? 10_000, async () => {
      if (!proc.running) throw new Error(`haproxy exited: ${proc.output()}`);
      if (!existsSync(socket)) return false;
      return (await socatRunner(node, 'show info', { timeoutMs: 1000 })).includes('Name: HAProxy');
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { node, ports, proc, stop };
}
