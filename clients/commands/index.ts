import type { Command } from 'commander';
import { register as registerLab } from './lab';
import { register as registerSecrets } from './secrets';
import { register as registerValidate } from './validate';

/** Every command module exports `register(program)`; add one line per module. */
export function registerCommands(program: Command): void {
  void program;
  registerLab(program);
  registerValidate(program);
  registerSecrets(program);
}
