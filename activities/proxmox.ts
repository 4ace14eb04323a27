/**
 * The Proxmox host transport: one SSH connection (ssh2) to the Proxmox host, reused for every
 * command, over which pgha runs `pct exec <vmid> -- argv` exactly as an operator would.
 *
 * - The host key is pinned: the server's key must match the SHA256 fingerprint from the inventory
 *   (`SHA256:...`, as `ssh-keygen -lf` prints it). There is no accept-any mode.
 * - Commands are argv, quoted by activities/command.ts (the one place a command string is built).
 * - Every command has a timeout (and honours an AbortSignal); a broken connection is replaced by a
 *   new one on the next call. At most `maxChannels` commands share the connection at a time
 *   (OpenSSH's default MaxSessions is 10).
 * - Errors are typed and say what to do: host key mismatch, auth failure, host unreachable,
 *   unknown CT, CT not running, command failed (exit code + tail of stderr), timeout.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:os';
import type { ClientChannel } from 'ssh2';
import { Client } from 'ssh2';
import { pct, pctExec, quote } from './command';
import { resolveSecretRef } from './secrets';

// ---------------------------------------------------------------------------------------------
// Errors

export type ProxmoxErrorKind =
  | 'HostKeyMismatch'
  | 'AuthFailed'
  | 'Unreachable'
  | 'UnknownCt'
  | 'CtNotRunning'
  | 'CommandFailed'
  | 'Timeout'
  | 'Aborted'
  | 'OutputTooLarge'
  | 'BadConfig';

/** Retrying does not help these: they need an operator (or a fixed inventory). */
const NON_RETRYABLE: ReadonlySet<ProxmoxErrorKind> = new Set([
  'HostKeyMismatch',
  'AuthFailed',
  'UnknownCt',
  'BadConfig',
  'OutputTooLarge',
]);

export class ProxmoxError extends Error {
  readonly retryable: boolean;
  constructor(
    readonly kind: ProxmoxErrorKind,
    message: string,
    readonly details: { vmid?: number; code?: number; stderrTail?: string; command?: string[] } = {},
  ) {
    super(message);
    this.name = `Proxmox${kind}`;
    this.retryable = !NON_RETRYABLE.has(kind);
  }
}

// ---------------------------------------------------------------------------------------------
// Configuration

export interface ProxmoxConfig {
  host: string;
  port?: number;
  user?: string;
  /** The private key itself (OpenSSH or PEM format), already resolved from its secret reference. */
  privateKey: string | Buffer;
  /** The pinned host key fingerprint, `SHA256:` + 43 base64 characters. */
  hostKeyFingerprint: string;
  /** SSH handshake deadline (default 15 s). */
  connectTimeoutMs?: number;
  /** Default per-command deadline (default 60 s). */
  commandTimeoutMs?: number;
  /** Commands running at once over the connection (default 8). */
  maxChannels?: number;
  /** Output beyond this many bytes (stdout + stderr) fails the command (default 256 MiB). */
  maxOutputBytes?: number;
}

/** The inventory's `proxmox` section: secrets as references (`file:` / `env:`). */
export interface ProxmoxInventorySection {
  host: string;
  port?: number;
  user?: string;
  privateKey: string;
  /** A literal `SHA256:...` or a reference to a file/variable holding it. */
  hostKeyFingerprint: string;
}

const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** The SHA256 fingerprint of an SSH public key blob, as `ssh-keygen -l -E sha256` prints it. */
export function sshFingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** Resolve the section's secret references into a ready config. Errors name the field, never a value. */
export async function resolveProxmoxConfig(
  section: ProxmoxInventorySection,
  extra: Partial<Omit<ProxmoxConfig, 'host' | 'privateKey' | 'hostKeyFingerprint'>> = {},
): Promise<ProxmoxConfig> {
  if (!section?.host) throw new ProxmoxError('BadConfig', 'proxmox.host is missing in the inventory');
  if (!section.privateKey) {
    throw new ProxmoxError(
      'BadConfig',
      'proxmox.privateKey is missing: set it to file:/path/to/key or env:NAME',
    );
  }
  if (!section.hostKeyFingerprint) {
    throw new ProxmoxError(
      'BadConfig',
      'proxmox.hostKeyFingerprint is missing: pin the host key (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the Proxmox host)',
    );
  }
  const privateKey = await resolveSecretRef(section.privateKey);
  const fp = FINGERPRINT.test(section.hostKeyFingerprint)
    ? section.hostKeyFingerprint
    : (await resolveSecretRef(section.hostKeyFingerprint)).trim();
  return {
    ...extra,
    host: section.host,
    port: section.port,
    user: section.user,
    privateKey,
    hostKeyFingerprint: fp,
  };
}

// ---------------------------------------------------------------------------------------------
// The host

export interface ExecOptions {
  /** Bytes fed to the command's stdin (then EOF). Without it, stdin is closed at once. */
  stdin?: string | Buffer;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ExecResult<T = string> {
  /** The exit status; 128 + n when the command was killed by signal n. */
  code: number;
  signal?: string;
  stdout: T;
  stderr: string;
}

export interface PushOptions {
  /** File mode, e.g. 0o640 (default 0o644). */
  mode?: number;
  /** Owner and group inside the CT, by name or number (default root:root). */
  owner?: string;
  group?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

function tail(text: string, lines = 10, chars = 2000): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n').slice(-chars);
}

const UNKNOWN_CT = /Configuration file 'nodes\/[^/]+\/lxc\/(\d+)\.conf' does not exist/;
const NOT_RUNNING = /^CT (\d+) not running$/m;

/** Writes stdin to a temp file next to the destination, sets owner and mode, renames it into place. */
const PUSH_SCRIPT = `set -e
dest=$1 mode=$2 owner=$3 group=$4 sha=$5
if [ -f "$dest" ] && [ "$(sha256sum <"$dest" | cut -d' ' -f1)" = "$sha" ]; then
  have=$(stat -c '%a %U %G|%a %u %g' -- "$dest")
  case "|$have|" in *"|$mode $owner $group|"*) cat >/dev/null; echo unchanged; exit 0 ;; esac
fi
dir=$(dirname -- "$dest")
[ -d "$dir" ] || { echo "directory $dir does not exist" >&2; exit 2; }
tmp=$(mktemp "$dir/.pgha-push.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat >"$tmp"
chown -- "$owner:$group" "$tmp"
chmod -- "$mode" "$tmp"
mv -f -- "$tmp" "$dest"
trap - EXIT
echo changed`;

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
      const p: Promise<Client> = this.connect(() => {
        if (this.conn === p) this.conn = undefined; // dead: the next call connects afresh
      });
      this.conn = p;
      p.catch(() => undefined);
    }
    return this.conn;
  }

  private connect(onDead: () => void): Promise<Client> {
    return new Promise((resolve, reject) => {
      const client = new Client();
      let presented: string | undefined;
      let settled = false;
      client.on('ready', () => {
        settled = true;
        resolve(client);
      });
      client.on('close', onDead);
      client.on('end', onDead);
      client.on('error', (err: Error & { level?: string; code?: string }) => {
        onDead();
        if (settled) return; // a later error on a live connection: the next call reconnects
        settled = true;
        client.destroy();
        if (presented !== undefined && presented !== this.cfg.hostKeyFingerprint) {
          reject(
            new ProxmoxError(
              'HostKeyMismatch',
              `host key mismatch for ${this.where}: it presented ${presented}, the inventory pins ` +
                `${this.cfg.hostKeyFingerprint}. Someone may be intercepting the connection, or the host was ` +
                `reinstalled: check the key on the host (ssh-keygen -lf) before updating proxmox.hostKeyFingerprint`,
            ),
          );
        } else if (err.level === 'client-authentication') {
          reject(
            new ProxmoxError(
              'AuthFailed',
              `authentication as ${this.user} to ${this.where} failed: the server refused the key from ` +
                `proxmox.privateKey (is its public key in the host's authorized_keys?)`,
            ),
          );
        } else if (err.level === 'client-timeout') {
          reject(
            new ProxmoxError(
              'Unreachable',
              `no SSH handshake with ${this.where} within ${this.cfg.connectTimeoutMs} ms`,
            ),
          );
        } else {
          reject(
            new ProxmoxError(
              'Unreachable',
              `cannot connect to ${this.where}: ${err.code ?? ''} ${err.message}`.trim(),
            ),
          );
        }
      });
      try {
        client.connect({
          host: this.host,
          port: this.port,
          username: this.user,
          privateKey: this.cfg.privateKey,
          readyTimeout: this.cfg.connectTimeoutMs,
          keepaliveInterval: 15_000,
          keepaliveCountMax: 3,
          hostVerifier: (key: Buffer) => {
            presented = sshFingerprint(key);
            return presented === this.cfg.hostKeyFingerprint;
          },
        });
      } catch (err) {
        settled = true;
        onDead();
        reject(new ProxmoxError('BadConfig', `cannot use proxmox.privateKey: ${(err as Error).message}`));
      }
    });
  }

  /** Close the connection; later calls fail. */
  close(): void {
    this.closed = true;
    const conn = this.conn;
    this.conn = undefined;
    void conn?.then((c) => c.end()).catch(() => undefined);
  }

  private async slot<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.cfg.maxChannels) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
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
      let channel: ClientChannel;
      try {
        channel = await this.openChannel(command);
      } catch (err) {
        if (err instanceof ProxmoxError) throw err;
        // The cached connection died under us: one fresh attempt.
        this.conn = undefined;
        try {
          channel = await this.openChannel(command);
        } catch (again) {
          if (again instanceof ProxmoxError) throw again;
          throw new ProxmoxError(
            'Unreachable',
            `cannot run a command on ${this.where}: ${(again as Error).message}`,
          );
        }
      }
      return this.collect(channel, command, { ...opts, timeoutMs: Math.max(1, deadline - Date.now()) });
    });
  }

  private async openChannel(command: string): Promise<ClientChannel> {
    const client = await this.connection();
    return new Promise((resolve, reject) => {
      try {
        client.exec(command, (err, channel) => (err ? reject(err) : resolve(channel)));
      } catch (err) {
        reject(err as Error);
      }
    });
  }

  private collect(channel: ClientChannel, command: string, opts: ExecOptions): Promise<ExecResult<Buffer>> {
    const timeoutMs = opts.timeoutMs ?? this.cfg.commandTimeoutMs;
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let bytes = 0;
      let code: number | undefined;
      let signal: string | undefined;
      let failure: ProxmoxError | undefined;

      // Fail at once: the remote command may not notice a closed channel (a sleeping process
      // never writes), so it is bounded on the CT side too (see execBuffer's `timeout`).
      const stop = (why: ProxmoxError) => {
        if (failure) return;
        failure = why;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        try {
          channel.signal('KILL');
        } catch {
          // not every server honours signals
        }
        channel.close();
        reject(why);
      };
      const timer = setTimeout(
        () =>
          stop(
            new ProxmoxError(
              'Timeout',
              `command timed out after ${timeoutMs} ms on ${this.where}: ${command}`,
            ),
          ),
        timeoutMs,
      );
      const onAbort = () =>
        stop(new ProxmoxError('Aborted', `command cancelled on ${this.where}: ${command}`));
      if (opts.signal?.aborted) onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });

      const take = (into: Buffer[]) => (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > this.cfg.maxOutputBytes) {
          stop(
            new ProxmoxError(
              'OutputTooLarge',
              `output exceeded ${this.cfg.maxOutputBytes} bytes: ${command}`,
            ),
          );
          return;
        }
        into.push(chunk);
      };
      channel.on('data', take(out));
      channel.stderr.on('data', take(err));
      channel.on('exit', (c: number | null, s?: string) => {
        code = c ?? undefined;
        signal = s ?? undefined;
      });
      channel.on('close', () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        if (failure) return;
        const stderr = Buffer.concat(err).toString('utf8');
        const sigName = signal && !signal.startsWith('SIG') ? `SIG${signal}` : signal;
        const sigNo = sigName ? constants.signals[sigName as keyof typeof constants.signals] : undefined;
        resolve({
          code: code ?? (sigNo !== undefined ? 128 + sigNo : 255),
          signal,
          stdout: Buffer.concat(out),
          stderr,
        });
      });
      channel.on('error', (e: Error) =>
        stop(new ProxmoxError('Unreachable', `channel error on ${this.where}: ${e.message}`)),
      );
      if (opts.stdin !== undefined) channel.end(opts.stdin);
      else channel.end();
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
   * Inside the CT, argv runs under coreutils `timeout` a few seconds longer than our own deadline,
   * so a command we gave up on (timeout, cancellation, lost connection) does not linger.
   */
  async execBuffer(vmid: number, argv: string[], opts: ExecOptions = {}): Promise<ExecResult<Buffer>> {
    const timeoutMs = opts.timeoutMs ?? this.cfg.commandTimeoutMs;
    const remoteDeadline = `${Math.ceil(timeoutMs / 1000) + 5}s`;
    const r = await this.run(pctExec(vmid, ['timeout', '-s', 'KILL', remoteDeadline, ...argv]), {
      ...opts,
      timeoutMs,
    });
    this.ctErrors(vmid, r, argv);
    return r;
  }

  /**
   * `pct exec <vmid> -- argv`: the command's exit code, stdout and stderr, whatever the code.
   * Throws for an unknown or stopped CT, a timeout, or a transport failure.
   */
  async exec(vmid: number, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.execBuffer(vmid, argv, opts);
    return { ...r, stdout: r.stdout.toString('utf8') };
  }

  /**
   * An interactive `pct exec <vmid> -- argv`: stdin and stdout stay open until the caller ends the
   * channel (e.g. HAProxy's runtime API in `prompt` mode, one command after another at ~1 ms each
   * instead of ~75 ms for a fresh pct exec). The channel counts as one of `maxChannels` until it
   * closes. Throws for a transport failure; the command's own failure shows as the channel closing.
   */
  async execStream(vmid: number, argv: string[]): Promise<ClientChannel> {
    if (this.active >= this.cfg.maxChannels) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.active--;
      this.waiting.shift()?.();
    };
    try {
      const channel = await this.openChannel(pctExec(vmid, argv));
      channel.on('close', release);
      return channel;
    } catch (err) {
      release();
      if (err instanceof ProxmoxError) throw err;
      throw new ProxmoxError(
        'Unreachable',
        `cannot open a session on ${this.where}: ${(err as Error).message}`,
      );
    }
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

/**
 * A factory the activities layer holds: one ProxmoxHost (one SSH connection) per host/port/user,
 * built on first use from the inventory's proxmox section.
 */
export function createProxmoxFactory(
  extra?: Partial<Omit<ProxmoxConfig, 'host' | 'privateKey' | 'hostKeyFingerprint'>>,
): { get(section: ProxmoxInventorySection): Promise<ProxmoxHost>; closeAll(): void } {
  const hosts = new Map<string, Promise<ProxmoxHost>>();
  return {
    get(section) {
      const key = `${section.user ?? 'root'}@${section.host}:${section.port ?? 22}|${section.hostKeyFingerprint}`;
      let h = hosts.get(key);
      if (!h) {
        h = ProxmoxHost.fromInventory(section, extra);
        hosts.set(key, h);
        h.catch(() => hosts.delete(key));
      }
      return h;
    },
    closeAll() {
      for (const h of hosts.values()) void h.then((x) => x.close()).catch(() => undefined);
      hosts.clear();
    },
  };
}
