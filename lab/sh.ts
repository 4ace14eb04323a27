/**
 * Running host commands for the lab: argv only (never a shell), every call bounded by a timeout,
 * failures reported with the command, its exit status and the tail of its stderr.
 */
import { spawnSync } from 'node:child_process';

export interface RunOptions {
  input?: string | Buffer;
  /** Default 60 s; the process is killed (SIGKILL) when it runs out. */
  timeoutMs?: number;
  /** Return a non-zero exit as a result instead of throwing. */
  allowFail?: boolean;
  /** Pass stdout/stderr through to the terminal instead of capturing them. */
  inherit?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly argv: string[],
    readonly result: RunResult,
    what: string,
  ) {
    super(`${argv.join(' ')}: ${what}${tail(result.stderr) ? `: ${tail(result.stderr)}` : ''}`);
  }
}

function tail(text: string, lines = 8): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/**
 * The environment for a daemon the lab leaves running (a CT's lxc-start monitor, the host's sshd):
 * without the test run's id, since scripts/test stops every process that carries it when the run
 * ends — the lab outlives any one run (CI's lab tests stopped 7 CTs that way).
 */
export function daemonEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.PGHA_TEST_RUN_ID;
  return env;
}

export function run(cmd: string, args: string[], opts: RunOptions = {}): RunResult {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const r = spawnSync(cmd, args, {
    input: opts.input,
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    stdio: opts.inherit ? ['pipe', 'inherit', 'inherit'] : 'pipe',
    env: opts.env ?? process.env,
  });
  const result: RunResult = {
    code: r.status ?? 128 + 9,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
  };
  const argv = [cmd, ...args];
  const err = r.error as NodeJS.ErrnoException | undefined;
  if (err?.code === 'ENOENT')
    throw new CommandError(argv, result, `${cmd} is not installed (run lab/bootstrap)`);
  if (err?.code === 'ETIMEDOUT') throw new CommandError(argv, result, `timed out after ${timeoutMs} ms`);
  if (err) throw new CommandError(argv, result, err.message);
  if (result.code !== 0 && !opts.allowFail) {
    throw new CommandError(argv, result, r.signal ? `killed by ${r.signal}` : `exit status ${result.code}`);
  }
  return result;
}

/** True when the command exits 0. */
export function succeeds(cmd: string, args: string[], timeoutMs = 30_000): boolean {
  return run(cmd, args, { allowFail: true, timeoutMs }).code === 0;
}

/** A synchronous sleep for bounded polls in this synchronous CLI code. */
export function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Poll `check` until it returns a value (not undefined) or the deadline passes. */
export function waitFor<T>(
  what: string,
  timeoutMs: number,
  intervalMs: number,
  check: () => T | undefined,
): T {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    sleep(intervalMs);
  }
}
