/**
 * The `pgha` program, built without running it (clients/pgha.ts runs it; test/unit/fuzz-cli.test.ts
 * drives it in-process). Bad input ends with exit status 2 and one message naming what was wrong —
 * the option, argument or command — before any action runs: commander's own parse errors (unknown
 * command or option, missing value, too many arguments, a value its parser refuses) and an
 * inventory given with `--cluster <file>` that does not load, which is checked here before the
 * command connects to Temporal or touches the cluster.
 */
import { Command, CommanderError } from 'commander';
import { checkInventoryFile, formatIssues } from '../runbooks/inventory';
import { registerCommands } from './commands';

/** Where the program writes (default the process's stdout and stderr). */
export interface CliOutput {
  out: (s: string) => void;
  err: (s: string) => void;
}

const processOutput: CliOutput = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
};

/** Bad input found before any action ran: exit status 2. */
export class CliUsageError extends Error {}

/** Control characters and lone surrogates as escapes, so a rejected value cannot drive the terminal. */
export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]|[\ud800-\udfff]/gu, (c) =>
    c.length === 1 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c,
  );
}

/** The first 200 characters of a value, for a message (a huge value is named, not repeated). */
function shown(v: string): string {
  return JSON.stringify(v.length > 200 ? `${v.slice(0, 200)}…` : v);
}

/**
 * Every `--cluster <file>` is an inventory that loads, or the command is refused before it acts —
 * except `pgha validate`, whose report on a file that does not load is its answer (exit 1, every
 * error, JSON with --json).
 */
async function checkClusterFile(action: Command): Promise<void> {
  if (action.name() === 'validate') return;
  const takesFile = action.options.some((o) => o.long === '--cluster' && o.flags.includes('<file>'));
  const file: unknown = action.opts().cluster;
  if (!takesFile || typeof file !== 'string') return;
  const r = await checkInventoryFile(file);
  if (r.inventory) return;
  throw new CliUsageError(
    `--cluster ${shown(file)}: not a valid inventory, nothing done\n${formatIssues(r)
      .map((l) => `  ${l}`)
      .join('\n')}`,
  );
}

export function buildProgram(output: CliOutput = processOutput): Command {
  const program = new Command('pgha')
    .description('Durable runbooks for PostgreSQL HA clusters (Patroni + etcd + HAProxy), run by Temporal')
    .showHelpAfterError()
    .exitOverride() // inherited by every subcommand: a parse error throws a CommanderError to runCli
    .configureOutput({
      writeOut: output.out,
      writeErr: output.err,
      outputError: (str, write) => write(`pgha: ${printable(str.replace(/^error: /, ''))}`),
    });
  registerCommands(program);
  // Registered after the commands' own hooks (--by): runs before every action.
  program.hook('preAction', (_program, action) => checkClusterFile(action));
  return program;
}

/**
 * Runs the program on `argv` (node's: the first two entries are node and the script) and returns
 * the exit status: 0 (or what the command set in process.exitCode), 2 for bad input, 1 for a failure.
 * Never throws.
 */
export async function runCli(argv: readonly string[], output: CliOutput = processOutput): Promise<number> {
  try {
    await buildProgram(output).parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version asked for: success; anything else commander refused: already printed
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : 2;
    }
    const message = err instanceof Error ? err.message : String(err);
    output.err(`pgha: ${printable(message)}\n`);
    return err instanceof CliUsageError ? 2 : 1;
  }
}
