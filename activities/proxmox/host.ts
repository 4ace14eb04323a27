/**
 * The Proxmox host transport: one SSH connection (ssh2) to the Proxmox host, reused for every
 * command, over which pgha runs `pct exec <vmid> -- argv` exactly as an operator would.
 *
 * - The host key is pinned: the server's key must match the SHA256 fingerprint from the inventory
 *   (`SHA256:...`, as `ssh-keygen -lf` prints it). There is no accept-any mode.
 * - Commands are argv, quoted by activities/command.ts (the one place a command string is built).
 * - Every command has a timeout (and honours an AbortSignal); a broken connection is replaced by a
 *   new one on the next call. A command we give up on (cancelled or timed out) is killed inside the
 *   CT: closing the SSH channel alone leaves it running there (see `execBuffer`). At most
 *   `maxChannels` commands share the connection at a time (OpenSSH's default MaxSessions is 10).
 * - Errors are typed and say what to do: host key mismatch, auth failure, host unreachable,
 *   unknown CT, CT not running, command failed (exit code + tail of stderr), timeout.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { ClientChannel, Client } from 'ssh2';
import { pct, pctExec, quote } from '../command';
import { FINGERPRINT, resolveProxmoxConfig } from './config';
import type { ProxmoxConfig, ProxmoxInventorySection } from './config';
import { ProxmoxError, tail } from './errors';
import { EXEC_MARK, KILL_SCRIPT, KILL_TIMEOUT_MS, NOT_RUNNING, PUSH_SCRIPT, UNKNOWN_CT } from './scripts';
import { collect, connectSsh, recordExit, recordedExit } from './ssh';
import type { ExecOptions, ExecResult, PctSession, PushOptions, SessionOptions } from './types';

export class ProxmoxHost {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  private readonly cfg: Required<Omit<ProxmoxConfig, 'host' | 'port' | 'user'>>;
  private conn?: Promise<Client>;
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private closed = false;

  constructor(config: ProxmoxConfig) {
    if (!FINGERPRINT.test(config.hostKeyFingerprint ?? '')) {
      throw new ProxmoxError(
        'BadConfig',
        `proxmox.hostKeyFingerprint must look like SHA256:<43 base64 characters> (as ssh-keygen -lf prints it); ` +
          `got ${JSON.stringify(String(config.hostKeyFingerprint).slice(0, 60))}`,
      );
    }
    this.host = config.host;
    this.port = config.port ?? 22;
    this.user = config.user ?? 'root';
    this.cfg = {
      privateKey: config.privateKey,
      hostKeyFingerprint: config.hostKeyFingerprint,
      connectTimeoutMs: config.connectTimeoutMs ?? 15_000,
      commandTimeoutMs: config.commandTimeoutMs ?? 60_000,
      maxChannels: config.maxChannels ?? 8,
      maxOutputBytes: config.maxOutputBytes ?? 256 * 1024 * 1024,
    };
  }

  /** Build from the inventory's proxmox section, resolving its secret references. */
  static async fromInventory(
    section: ProxmoxInventorySection,
    extra?: Partial<Omit<ProxmoxConfig, 'host' | 'privateKey' | 'hostKeyFingerprint'>>,
  ): Promise<ProxmoxHost> {
    return new ProxmoxHost(await resolveProxmoxConfig(section, extra));
  }

  private get where(): string {
    return `${this.user}@${this.host}:${this.port}`;
  }

  // --- connection ------------------------------------------------------------------------

  /** The shared connection, made (or remade after a failure) on demand. */
  private connection(): Promise<Client> {
    if (this.closed)
      return Promise.reject(new ProxmoxError('Aborted', `connection to ${this.where} was closed`));
    if (!this.conn) {
      const o = { host: this.host, port: this.port, user: this.user, ...this.cfg };
      const p: Promise<Client> = connectSsh(o, () => {
        if (this.conn === p) this.conn = undefined; // dead: the next call connects afresh
      });
      this.conn = p;
      p.catch(() => undefined);
    }
    return this.conn;
  }

  /** Close the connection; later calls fail. */
  close(): void {
    this.closed = true;
    const conn = this.conn;
    this.conn = undefined;
    void conn?.then((c) => c.end()).catch(() => undefined);
  }

  /** Waits for a free channel; the returned function gives it back (once). */
  private async acquire(): Promise<() => void> {
    if (this.active >= this.cfg.maxChannels) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.waiting.shift()?.();
    };
  }

  private async slot<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  // --- raw commands on the host ---------------------------------------------------------

  /**
   * Run a command line on the Proxmox host (built by command.ts) and collect its output.
   * A broken connection is retried once on a fresh one, but only if the command never started.
   */
  async run(command: string, opts: ExecOptions = {}): Promise<ExecResult<Buffer>> {
    // The deadline covers the wait for a free channel and the connect, not just the command.
    const timeoutMs = opts.timeoutMs ?? this.cfg.commandTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    return this.slot(async () => {
      if (opts.signal?.aborted)
        throw new ProxmoxError('Aborted', `command cancelled on ${this.where}: ${command}`);
      if (Date.now() >= deadline) {
        throw new ProxmoxError(
          'Timeout',
          `command timed out after ${timeoutMs} ms waiting for a channel on ${this.where}`,
        );
      }
      const channel = await this.openChannelRetry(command);
      return collect(channel, command, {
        ...opts,
        timeoutMs: Math.max(1, deadline - Date.now()),
        maxOutputBytes: this.cfg.maxOutputBytes,
        where: this.where,
      });
    });
  }

  /** A channel for `command`; a cached connection that died under us gets one fresh attempt. */
  private async openChannelRetry(command: string): Promise<ClientChannel> {
    try {
      return await this.openChannel(command);
    } catch (err) {
      if (err instanceof ProxmoxError) throw err;
      this.conn = undefined;
      try {
        return await this.openChannel(command);
      } catch (again) {
        if (again instanceof ProxmoxError) throw again;
        throw new ProxmoxError(
          'Unreachable',
          `cannot run a command on ${this.where}: ${(again as Error).message}`,
        );
      }
    }
  }

  private async openChannel(command: string): Promise<ClientChannel> {
    const client = await this.connection();
    return new Promise((resolve, reject) => {
      try {
        client.exec(command, (err, channel) => (err ? reject(err) : resolve(recordExit(channel))));
      } catch (err) {
        reject(err as Error);
      }
    });
  }

  // --- pct ------------------------------------------------------------------------------

  /** Proxmox's own errors about the CT (not the command's) become typed errors. */
  private ctErrors(vmid: number, r: ExecResult<unknown>, argv: string[]): void {
    if (r.code !== 255) return;
    if (UNKNOWN_CT.test(r.stderr)) {
      throw new ProxmoxError(
        'UnknownCt',
        `CT ${vmid} does not exist on ${this.host} (${tail(r.stderr, 1)})`,
        {
          vmid,
          code: r.code,
          command: argv,
        },
      );
    }
    if (NOT_RUNNING.test(r.stderr)) {
      throw new ProxmoxError(
        'CtNotRunning',
        `CT ${vmid} is not running on ${this.host}: start it (pct start ${vmid})`,
        {
          vmid,
          code: r.code,
          command: argv,
        },
      );
    }
  }

  /**
   * `pct exec <vmid> -- argv` with its output as bytes. Throws only for CT/transport errors.
   *
   * A command we give up on does not linger in the CT. Closing the SSH channel does not reach it
   * (a sleeping process never notices), so argv runs marked (`env PGHA_EXEC=<id>`) under coreutils
   * `timeout` a few seconds longer than our own deadline (the bound if the host is unreachable),
   * and when `opts.signal` aborts or our deadline passes, a second `pct exec` kills every process
   * carrying the mark before this rejects (bounded by KILL_TIMEOUT_MS).
   * A command line the host could not take is refused first (CommandTooLongError, non-retryable).
   */
  async execBuffer(vmid: number, argv: string[], opts: ExecOptions = {}): Promise<ExecResult<Buffer>> {
    const timeoutMs = opts.timeoutMs ?? this.cfg.commandTimeoutMs;
    const id = randomBytes(8).toString('hex');
    const deadline = `${Math.ceil(timeoutMs / 1000) + 5}s`;
    const line = pctExec(vmid, argv, ['env', `${EXEC_MARK}=${id}`, 'timeout', '-s', 'KILL', deadline]);
    let r: ExecResult<Buffer>;
    try {
      r = await this.run(line, { ...opts, timeoutMs });
    } catch (err) {
      if (err instanceof ProxmoxError && (err.kind === 'Aborted' || err.kind === 'Timeout')) {
        throw await this.killGivenUp(vmid, id, err, deadline);
      }
      throw err;
    }
    this.ctErrors(vmid, r, argv);
    return r;
  }

  /** Kills the marked processes of a command we gave up on; `why` gains what became of them. */
  private async killGivenUp(
    vmid: number,
    id: string,
    why: ProxmoxError,
    deadline: string,
  ): Promise<ProxmoxError> {
    let outcome: string;
    try {
      const k = await this.run(pctExec(vmid, ['sh', '-c', KILL_SCRIPT, 'pgha-kill', id]), {
        timeoutMs: KILL_TIMEOUT_MS,
      });
      const n = Number(k.stdout.toString('utf8').trim());
      outcome =
        k.code === 0
          ? n > 0
            ? `killed it in CT ${vmid} (${n} process${n === 1 ? '' : 'es'})`
            : `it was no longer running in CT ${vmid}`
          : `could not kill it in CT ${vmid} (exit ${k.code}: ${tail(k.stderr, 2)}); it ends there within ${deadline}`;
    } catch (err) {
      outcome = `could not kill it in CT ${vmid} (${(err as Error).message}); it ends there within ${deadline}`;
    }
    return new ProxmoxError(why.kind, `${why.message}; ${outcome}`, { ...why.details, vmid });
  }

  /**
   * A long-lived `pct exec <vmid> -- argv` with its stdin and stdout as a stream, for protocols
   * spoken through a command (HAProxy's runtime API through socat). It holds one of the
   * connection's channels until closed; inside the CT it is marked and bounded like execBuffer,
   * and `close()` (or `opts.signal`) kills it there.
   */
  async openSession(vmid: number, argv: string[], opts: SessionOptions = {}): Promise<PctSession> {
    const lifetimeMs = opts.maxLifetimeMs ?? 600_000;
    const id = randomBytes(8).toString('hex');
    const deadline = `${Math.ceil(lifetimeMs / 1000)}s`;
    const line = pctExec(vmid, argv, ['env', `${EXEC_MARK}=${id}`, 'timeout', '-s', 'KILL', deadline]);
    if (opts.signal?.aborted)
      throw new ProxmoxError('Aborted', `session cancelled on ${this.where}: ${line}`);
    const release = await this.acquire();
    let channel: ClientChannel;
    try {
      channel = await this.openChannelRetry(line);
    } catch (err) {
      release();
      throw err;
    }
    const exit = new Promise<{ code: number; signal?: string }>((resolve) => {
      let status: { code: number; signal?: string } = { code: 255 };
      channel.on('exit', (c: number | null, sig?: string) => {
        status = { code: c ?? 255, signal: sig ?? undefined };
      });
      channel.on('close', () => {
        release();
        // the status recorded from the channel's first moment (an early 'exit' is missed above)
        const seen = recordedExit(channel);
        resolve(
          seen && (seen.code !== undefined || seen.signal)
            ? { code: seen.code ?? 255, signal: seen.signal }
            : status,
        );
      });
    });
    channel.on('error', () => undefined); // surfaces as the exit; never an unhandled 'error'
    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        opts.signal?.removeEventListener('abort', onAbort);
        try {
          channel.end();
          channel.close();
        } catch {
          // already closed
        }
        await this.killGivenUp(vmid, id, new ProxmoxError('Aborted', 'session closed'), deadline);
      })();
      return closing;
    };
    const onAbort = () => void close();
    // cancelled while the channel was opening: an 'abort' that already fired never fires again
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    return { stream: channel, stderr: channel.stderr, exit, close };
  }

  /**
   * `pct exec <vmid> -- argv`: the command's exit code, stdout and stderr, whatever the code.
   * Throws for an unknown or stopped CT, a timeout, or a transport failure.
   */
  async exec(vmid: number, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.execBuffer(vmid, argv, opts);
    return { ...r, stdout: r.stdout.toString('utf8') };
  }

  /** Like exec, but a non-zero exit is an error with the exit code and the tail of stderr. */
  async execChecked(vmid: number, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.exec(vmid, argv, opts);
    if (r.code !== 0) {
      const stderrTail = tail(r.stderr);
      throw new ProxmoxError(
        'CommandFailed',
        `CT ${vmid}: ${quote(argv).slice(0, 200)} exited with ${r.code}${r.signal ? ` (${r.signal})` : ''}` +
          (stderrTail ? `: ${stderrTail}` : ''),
        { vmid, code: r.code, stderrTail, command: argv },
      );
    }
    return r;
  }

  /**
   * Write `content` to `destPath` inside the CT with the given mode and owner, atomically (temp
   * file + rename), and only when something differs. Returns whether the file changed.
   */
  async push(
    vmid: number,
    destPath: string,
    content: string | Buffer,
    opts: PushOptions = {},
  ): Promise<{ changed: boolean }> {
    if (!destPath.startsWith('/'))
      throw new ProxmoxError('BadConfig', `push: destination must be absolute: ${destPath}`);
    const mode = opts.mode ?? 0o644;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
      throw new ProxmoxError('BadConfig', `push: mode must be an integer such as 0o640, got ${mode}`);
    }
    const owner = opts.owner ?? 'root';
    const group = opts.group ?? 'root';
    const sha = createHash('sha256').update(content).digest('hex');
    const argv = ['sh', '-c', PUSH_SCRIPT, 'pgha-push', destPath, mode.toString(8), owner, group, sha];
    const r = await this.execChecked(vmid, argv, {
      stdin: content,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
    });
    return { changed: r.stdout.trim() === 'changed' };
  }

  /** The bytes of a file inside the CT. */
  async pull(vmid: number, path: string, opts: ExecOptions = {}): Promise<Buffer> {
    const r = await this.execBuffer(vmid, ['cat', '--', path], opts);
    if (r.code !== 0) {
      throw new ProxmoxError('CommandFailed', `CT ${vmid}: cannot read ${path}: ${tail(r.stderr)}`, {
        vmid,
        code: r.code,
        stderrTail: tail(r.stderr),
        command: ['cat', '--', path],
      });
    }
    return r.stdout;
  }

  private async pctChecked(
    sub: string,
    vmid: number,
    args: string[] = [],
    timeoutMs?: number,
  ): Promise<string> {
    const r = await this.run(pct(sub, vmid, args), { timeoutMs });
    this.ctErrors(vmid, r, ['pct', sub, String(vmid), ...args]);
    if (r.code !== 0) {
      throw new ProxmoxError(
        'CommandFailed',
        `pct ${sub} ${vmid} failed (exit ${r.code}): ${tail(r.stderr)}`,
        {
          vmid,
          code: r.code,
          stderrTail: tail(r.stderr),
          command: ['pct', sub, String(vmid), ...args],
        },
      );
    }
    return r.stdout.toString('utf8');
  }

  /** `pct status`: 'running' or 'stopped'. */
  async status(vmid: number): Promise<'running' | 'stopped'> {
    const out = await this.pctChecked('status', vmid);
    const m = /^status: (running|stopped)$/m.exec(out);
    if (!m)
      throw new ProxmoxError('CommandFailed', `pct status ${vmid}: unexpected output ${JSON.stringify(out)}`);
    return m[1] as 'running' | 'stopped';
  }

  /** Start the CT unless it runs already. Returns whether it was started. */
  async start(vmid: number, timeoutMs = 120_000): Promise<{ changed: boolean }> {
    if ((await this.status(vmid)) === 'running') return { changed: false };
    await this.pctChecked('start', vmid, [], timeoutMs);
    return { changed: true };
  }

  /** Hard-stop the CT (pct stop) unless it is stopped already. */
  async stop(vmid: number, timeoutMs = 120_000): Promise<{ changed: boolean }> {
    if ((await this.status(vmid)) === 'stopped') return { changed: false };
    await this.pctChecked('stop', vmid, [], timeoutMs);
    return { changed: true };
  }

  /** Clean shutdown (pct shutdown), hard stop after `timeoutS` seconds. */
  async shutdown(vmid: number, timeoutS = 60): Promise<{ changed: boolean }> {
    if ((await this.status(vmid)) === 'stopped') return { changed: false };
    await this.pctChecked(
      'shutdown',
      vmid,
      ['--timeout', String(timeoutS), '--forceStop', '1'],
      (timeoutS + 70) * 1000,
    );
    return { changed: true };
  }

  /**
   * A bind mount point, Proxmox's `pct set <vmid> -mp<index> <hostDir>,mp=<path>`, unless `pct
   * config` shows it already. Returns whether it was set (a running CT may need a restart to see it).
   */
  async setMountPoint(
    vmid: number,
    index: number,
    hostDir: string,
    path: string,
  ): Promise<{ changed: boolean }> {
    const spec = `${hostDir},mp=${path}`;
    if ((await this.config(vmid))[`mp${index}`] === spec) return { changed: false };
    await this.pctChecked('set', vmid, [`-mp${index}`, spec]);
    return { changed: true };
  }

  /** `pct reboot`: a clean restart of a running CT. */
  async reboot(vmid: number, timeoutMs = 180_000): Promise<void> {
    await this.pctChecked('reboot', vmid, [], timeoutMs);
  }

  /** `pct config` as key → value (`hostname`, `net0`, ...). */
  async config(vmid: number): Promise<Record<string, string>> {
    const out = await this.pctChecked('config', vmid);
    const cfg: Record<string, string> = {};
    for (const line of out.split('\n')) {
      const m = /^([a-z0-9_-]+): (.*)$/.exec(line);
      if (m) cfg[m[1]!] = m[2]!;
    }
    return cfg;
  }
}
