/** What the transport takes and returns. */
import type { Duplex, Readable } from 'node:stream';

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

/** A long-lived command in a CT with its streams (e.g. a HAProxy runtime API session through socat). */
export interface PctSession {
  /** Write to it = the command's stdin; read from it = the command's stdout. */
  stream: Duplex;
  stderr: Readable;
  /** Settles when the command ends (or the channel closes): its exit status. */
  exit: Promise<{ code: number; signal?: string }>;
  /** Ends stdin, closes the channel and kills the command inside the CT (bounded). Idempotent. */
  close(): Promise<void>;
}

export interface SessionOptions {
  /** Upper bound of the session's life inside the CT (default 10 min): it is killed there after it. */
  maxLifetimeMs?: number;
  /** Aborting it closes the session (and kills the command in the CT). */
  signal?: AbortSignal;
}
