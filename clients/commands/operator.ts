/**
 * `--by NAME` on every command (who is acting; default PGHA_OPERATOR or the OS user): added to each
 * leaf command that has no `--by` of its own, and read before any action runs, so the client's
 * identity in the run's history and the PgOperator search attribute name the operator. Commands
 * registered later by other modules get it too, as long as this runs last.
 */
import type { Command } from 'commander';
import { setOperator } from '../operator';

function leaves(c: Command): Command[] {
  return c.commands.length ? c.commands.flatMap(leaves) : [c];
}

export function register(program: Command): void {
  for (const c of program.commands.flatMap(leaves)) {
    if (!c.options.some((o) => o.long === '--by')) {
      c.option('--by <name>', 'who is acting (recorded in the run; default $PGHA_OPERATOR or the OS user)');
    }
  }
  program.hook('preAction', (_program, action) => {
    const by: unknown = action.opts().by;
    if (typeof by === 'string') setOperator(by);
  });
}
