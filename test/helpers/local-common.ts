/**
 * Shared plumbing for the helpers that start real services on loopback for tests: free ports,
 * bounded waits, child processes that are always stopped, and the location of the binaries that
 * scripts/test-services unpacks under .tools/.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

export const repoRoot = resolve(__dirname, '..', '..');
export const toolsDir = process.env.PGHA_TOOLS ?? join(repoRoot, '.tools');

/** A binary installed by scripts/test-services; a clear error when it is missing. */
export function toolPath(...parts: string[]): string {
  const p = join(toolsDir, ...parts);
  if (!existsSync(p)) {
    throw new Error(`${p} is missing: run scripts/test-services (it is part of scripts/bootstrap)`);
  }
  return p;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') return fail(new Error('no port'));
      srv.close(() => ok(addr.port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns true; throws after `timeoutMs` with `what` and the last error. */
export async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr = '';
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastErr = err instanceof Error ? err.message : String(err);
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${lastErr}` : ''}`);
}

/** A child process whose output is kept (the tail is shown when it fails) and that can be stopped. */
/**
 * A file in the test run's artifacts directory (PGHA_TEST_ARTIFACTS, set by scripts/test), or
 * undefined when there is none (a test file run on its own).
 */
export function testArtifact(name: string): string | undefined {
  const dir = process.env.PGHA_TEST_ARTIFACTS;
  if (!dir) return undefined;
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
}

export class Proc {
  readonly child: ChildProcess;
  private out = '';
  exited: Promise<number | null>;

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    opts: SpawnOptions = {},
  ) {
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    // The whole output also goes to the run's artifacts (scripts/test sets the directory): the
    // secrets scan reads every worker's log.
    const log = testArtifact(`proc-${name.replace(/[^A-Za-z0-9_.-]/g, '_')}-${this.child.pid ?? 'x'}.log`);
    const keep = (b: Buffer) => {
      this.out = (this.out + b.toString()).slice(-8000);
      if (log) appendFileSync(log, b);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    this.exited = new Promise((r) => {
      this.child.once('exit', (code) => r(code));
      this.child.once('error', (err) => {
        keep(Buffer.from(String(err)));
        r(-1);
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.out;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Immediate SIGKILL (a crash). */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}
