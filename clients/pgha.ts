/**
 * The `pgha` CLI. Each command group lives in its own module under clients/commands/ and registers
 * itself here, so the CLI reads as a table of contents.
 */
import { Command } from 'commander';
import { registerCommands } from './commands';

const program = new Command('pgha')
  .description('Durable runbooks for PostgreSQL HA clusters (Patroni + etcd + HAProxy), run by Temporal')
  .showHelpAfterError()
  .configureOutput({ outputError: (str, write) => write(`pgha: ${str.replace(/^error: /, '')}`) });

registerCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`pgha: ${message}\n`);
  process.exitCode = process.exitCode || 1;
});
