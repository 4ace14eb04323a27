import type { Command } from 'commander';
import { register as registerLab } from './lab';

/** Every command module exports `register(program)`; add one line per module. */
export function registerCommands(program: Command): void {
  void program;
  registerLab(program);
}
