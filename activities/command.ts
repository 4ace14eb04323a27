/**
 * argv → shell text: the ONE place in pgha where a command string is built.
 *
 * A Proxmox host runs what we send over SSH through the login shell of root, once; `pct exec <vmid>
 * -- argv` then runs argv directly inside the CT (lxc-attach, no second shell). So one level of
 * POSIX quoting is exactly right, and every argument must go through `quote`: never concatenate
 * strings into a command. Arguments that need a shell inside the CT say so explicitly:
 * `['sh', '-c', script, 'sh', ...values]` with the values as positional parameters.
 */

export class CommandQuoteError extends Error {
  override readonly name = 'CommandQuoteError';
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

/** `pct exec <vmid> -- argv`: runs argv inside the CT, with no shell in between. */
export function pctExec(vmid: number, argv: readonly string[]): string {
  if (argv.length === 0) throw new CommandQuoteError('pct exec needs a command: argv is empty');
  return quote(['pct', 'exec', checkVmid(vmid), '--', ...argv]);
}

/** Any other `pct` subcommand on a CT: `pct <sub> <vmid> args...`. */
export function pct(subcommand: string, vmid: number, args: readonly string[] = []): string {
  if (!/^[a-z-]+$/.test(subcommand))
    throw new CommandQuoteError(`not a pct subcommand: ${JSON.stringify(subcommand)}`);
  return quote(['pct', subcommand, checkVmid(vmid), ...args]);
}
