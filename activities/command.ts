/**
 * argv → shell text: the ONE place in pgha where a command string is built.
 *
 * A Proxmox host runs what we send over SSH through the login shell of root, once; `pct exec <vmid>
 * -- argv` then runs argv directly inside the CT (lxc-attach, no second shell). So one level of
 * POSIX quoting is exactly right, and every argument must go through `quote`: never concatenate
 * strings into a command. Arguments that need a shell inside the CT say so explicitly:
 * `['sh', '-c', script, 'sh', ...values]` with the values as positional parameters.
 */

import { ApplicationFailure } from '@temporalio/common';
import { Failures } from '../runbooks/failures';

export class CommandQuoteError extends Error {
  override readonly name = Failures.CommandQuoteError;
}

/**
 * The longest command line the Proxmox host accepts: sshd hands it to the login shell as ONE
 * argument (`bash -c <line>`), and Linux refuses a single argument of MAX_ARG_STRLEN (32 pages =
 * 131072 bytes, the terminating NUL included) with E2BIG. Measured on the lab: 131071 bytes run,
 * 131072 fail before anything starts (sshd reports it as exit status 1). The whole argv list is
 * further bounded by ARG_MAX (2 MiB), which one such line cannot reach.
 */
export const HOST_COMMAND_MAX_BYTES = 131_071;

/**
 * A command too long for the host's `bash -c`: refused before anything runs. Retrying cannot help,
 * so it is a non-retryable failure of its own type; large data belongs on stdin.
 */
export class CommandTooLongError extends ApplicationFailure {
  constructor(
    message: string,
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(message, Failures.CommandTooLongError, true, [{ bytes, limit }]);
  }
}

const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

/**
 * Refuse `line` (the quoted text of wrapper + argv) when the host cannot run it. The message counts
 * the caller's own arguments (argv as passed, not the wrapper's nor the quoted words).
 */
export function checkCommandLength(line: string, argv: readonly string[]): string {
  const bytes = Buffer.byteLength(line, 'utf8');
  if (bytes <= HOST_COMMAND_MAX_BYTES) return line;
  let largest = 0;
  argv.forEach((a, i) => {
    if (Buffer.byteLength(a, 'utf8') > Buffer.byteLength(argv[largest] ?? '', 'utf8')) largest = i;
  });
  const argBytes = argv.reduce((n, a) => n + Buffer.byteLength(a, 'utf8'), 0);
  throw new CommandTooLongError(
    `command too long for the Proxmox host: its ${argv.length} argument${argv.length === 1 ? '' : 's'} ` +
      `(${argv[0] ?? ''} ...) take ${argBytes} bytes (${kib(argBytes)}; largest: argument ${largest}, ` +
      `${Buffer.byteLength(argv[largest] ?? '', 'utf8')} bytes), ${bytes} bytes as one command line, ` +
      `over the host's limit of ${HOST_COMMAND_MAX_BYTES} bytes (MAX_ARG_STRLEN of its \`bash -c\`). ` +
      'Nothing was run: pass large data on stdin instead',
    bytes,
    HOST_COMMAND_MAX_BYTES,
  );
}

/** Characters that never need quoting in any position (`=` and `~` excluded: assignment, tilde). */
const SAFE = /^[A-Za-z0-9_@%+:,./-]+$/;

function checkArg(arg: unknown, index: number): string {
  if (typeof arg !== 'string') {
    throw new CommandQuoteError(`argument ${index} is a ${typeof arg}, not a string: convert it explicitly`);
  }
  if (arg.includes('\0')) {
    throw new CommandQuoteError(
      `argument ${index} contains a NUL byte, which no command line can carry: pass such data on stdin`,
    );
  }
  // With the u flag a surrogate pair is one code point, so this matches only a lone surrogate.
  if (/[\uD800-\uDFFF]/u.test(arg)) {
    throw new CommandQuoteError(
      `argument ${index} is not well-formed Unicode (a lone surrogate): fix the input`,
    );
  }
  return arg;
}

/** One argument in POSIX single quotes (bare when it is plainly safe); `'` becomes `'\''`. */
export function quoteArg(arg: string, index = 0): string {
  const s = checkArg(arg, index);
  if (SAFE.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** argv as one shell command line that any POSIX shell splits back into exactly argv. */
export function quote(argv: readonly string[]): string {
  if (!Array.isArray(argv)) throw new CommandQuoteError('argv must be an array of strings');
  return argv.map((a, i) => quoteArg(a, i)).join(' ');
}

function checkVmid(vmid: number): string {
  if (!Number.isInteger(vmid) || vmid < 100 || vmid > 999_999_999) {
    throw new CommandQuoteError(
      `vmid ${String(vmid)} is not a Proxmox CT id (an integer from 100 to 999999999)`,
    );
  }
  return String(vmid);
}

/**
 * `pct exec <vmid> -- [wrapper...] argv`: runs argv inside the CT, with no shell in between.
 * `wrapper` (pgha's own, e.g. `env PGHA_EXEC=<id> timeout ...`) goes before the caller's argv.
 * Throws CommandTooLongError when the host could not take the line.
 */
export function pctExec(vmid: number, argv: readonly string[], wrapper: readonly string[] = []): string {
  if (argv.length === 0) throw new CommandQuoteError('pct exec needs a command: argv is empty');
  return checkCommandLength(quote(['pct', 'exec', checkVmid(vmid), '--', ...wrapper, ...argv]), argv);
}

/** Any other `pct` subcommand on a CT: `pct <sub> <vmid> args...`. */
export function pct(subcommand: string, vmid: number, args: readonly string[] = []): string {
  if (!/^[a-z-]+$/.test(subcommand))
    throw new CommandQuoteError(`not a pct subcommand: ${JSON.stringify(subcommand)}`);
  return checkCommandLength(quote(['pct', subcommand, checkVmid(vmid), ...args]), args);
}
