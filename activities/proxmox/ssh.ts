/**
 * The SSH side of the transport, as functions over ssh2: connect with the pinned host key (and
 * say precisely why a connection failed), and collect one command's output from its channel.
 */
import { constants } from 'node:os';
import type { ClientChannel } from 'ssh2';
import { Client } from 'ssh2';
import { ProxmoxError } from './errors';
import { sshFingerprint } from './config';
import type { ExecOptions, ExecResult } from './types';

export interface ConnectOptions {
  host: string;
  port: number;
  user: string;
  privateKey: string | Buffer;
  hostKeyFingerprint: string;
  connectTimeoutMs: number;
}

const whereOf = (o: ConnectOptions) => `${o.user}@${o.host}:${o.port}`;

/** Why a connection failed, as a typed error that says what to do. */
function connectError(
  o: ConnectOptions,
  err: Error & { level?: string; code?: string },
  presented: string | undefined,
): ProxmoxError {
  const where = whereOf(o);
  if (presented !== undefined && presented !== o.hostKeyFingerprint) {
    return new ProxmoxError(
      'HostKeyMismatch',
      `host key mismatch for ${where}: it presented ${presented}, the inventory pins ` +
        `${o.hostKeyFingerprint}. Someone may be intercepting the connection, or the host was ` +
        `reinstalled: check the key on the host (ssh-keygen -lf) before updating proxmox.hostKeyFingerprint`,
    );
  }
  if (err.level === 'client-authentication') {
    return new ProxmoxError(
      'AuthFailed',
      `authentication as ${o.user} to ${where} failed: the server refused the key from ` +
        `proxmox.privateKey (is its public key in the host's authorized_keys?)`,
    );
  }
  if (err.level === 'client-timeout') {
    return new ProxmoxError('Unreachable', `no SSH handshake with ${where} within ${o.connectTimeoutMs} ms`);
  }
  return new ProxmoxError(
    'Unreachable',
    `cannot connect to ${where}: ${err.code ?? ''} ${err.message}`.trim(),
  );
}

/**
 * One SSH connection whose server key must match the pinned fingerprint. `onDead` runs when it
 * closes or fails (the caller then connects afresh on its next command).
 */
export function connectSsh(o: ConnectOptions, onDead: () => void): Promise<Client> {
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
      reject(connectError(o, err, presented));
    });
    try {
      client.connect({
        host: o.host,
        port: o.port,
        username: o.user,
        privateKey: o.privateKey,
        readyTimeout: o.connectTimeoutMs,
        keepaliveInterval: 15_000,
        keepaliveCountMax: 3,
        hostVerifier: (key: Buffer) => {
          presented = sshFingerprint(key);
          return presented === o.hostKeyFingerprint;
        },
      });
    } catch (err) {
      settled = true;
      onDead();
      reject(new ProxmoxError('BadConfig', `cannot use proxmox.privateKey: ${(err as Error).message}`));
    }
  });
}

/** The exit status as a number: 128 + n when the command was killed by signal n, 255 if unknown. */
function exitStatus(code: number | undefined, signal: string | undefined): number {
  if (code !== undefined) return code;
  const sigName = signal && !signal.startsWith('SIG') ? `SIG${signal}` : signal;
  const sigNo = sigName ? constants.signals[sigName as keyof typeof constants.signals] : undefined;
  return sigNo !== undefined ? 128 + sigNo : 255;
}

/** The exit status of each channel opened through {@link recordExit}, as soon as it arrives. */
const exits = new WeakMap<ClientChannel, { code?: number; signal?: string }>();

/**
 * Listens for the channel's exit status from the moment the channel exists — call it in the exec
 * callback itself. A fast command's exit status can arrive in the same read as the exec's reply:
 * ssh2 then emits 'exit' before a listener attached a few awaits later exists, while its output
 * (a buffered stream) and 'close' wait. Measured against the lab's OpenSSH at load ~12: 4 commands
 * in 40 read as "exit 255" with their whole output (a sha256sum that succeeded failed an etcd
 * snapshot, and a `mv` that was done another).
 */
export function recordExit(channel: ClientChannel): ClientChannel {
  const status: { code?: number; signal?: string } = {};
  exits.set(channel, status);
  channel.on('exit', (c: number | null, s?: string) => {
    status.code = c ?? undefined;
    status.signal = s ?? undefined;
  });
  return channel;
}

/** The exit status {@link recordExit} saw, if any. */
export const recordedExit = (channel: ClientChannel) => exits.get(channel);

export interface CollectOptions extends ExecOptions {
  timeoutMs: number;
  maxOutputBytes: number;
  /** user@host:port, for messages. */
  where: string;
}

/**
 * Feeds stdin to a started command and collects its stdout/stderr and exit status. Timeout,
 * abort, too much output or a channel error reject at once (and signal/close the channel).
 */
export function collect(
  channel: ClientChannel,
  command: string,
  o: CollectOptions,
): Promise<ExecResult<Buffer>> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    let code: number | undefined;
    let signal: string | undefined;
    let failure: ProxmoxError | undefined;

    // Fail at once: the remote command may not notice a closed channel (a sleeping process
    // never writes), so the caller kills it in the CT (see ProxmoxHost.execBuffer).
    const stop = (why: ProxmoxError) => {
      if (failure) return;
      failure = why;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
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
          new ProxmoxError('Timeout', `command timed out after ${o.timeoutMs} ms on ${o.where}: ${command}`),
        ),
      o.timeoutMs,
    );
    const onAbort = () => stop(new ProxmoxError('Aborted', `command cancelled on ${o.where}: ${command}`));
    if (o.signal?.aborted) onAbort();
    o.signal?.addEventListener('abort', onAbort, { once: true });

    const take = (into: Buffer[]) => (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > o.maxOutputBytes) {
        stop(new ProxmoxError('OutputTooLarge', `output exceeded ${o.maxOutputBytes} bytes: ${command}`));
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
      o.signal?.removeEventListener('abort', onAbort);
      if (failure) return;
      const stderr = Buffer.concat(err).toString('utf8');
      const seen = recordedExit(channel);
      if (code === undefined && signal === undefined && seen) ({ code, signal } = seen);
      resolve({ code: exitStatus(code, signal), signal, stdout: Buffer.concat(out), stderr });
    });
    channel.on('error', (e: Error) =>
      stop(new ProxmoxError('Unreachable', `channel error on ${o.where}: ${e.message}`)),
    );
    if (o.stdin !== undefined) channel.end(o.stdin);
    else channel.end();
  });
}
