/**
 * The `pgha` CLI. Each command group lives in its own module under clients/commands/ and registers
 * itself in clients/program.ts, so the CLI reads as a table of contents. Exit status: 0 done, 2 bad
 * input (nothing was done), 1 a failure; some commands set their own (e.g. `status`).
 */
import { runCli } from './program';

void runCli(process.argv).then((code) => {
  process.exitCode = process.exitCode || code;
});
