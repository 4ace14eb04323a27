import type { Command } from 'commander';
import * as codecServer from './codec-server';
import * as deploy from './deploy';
import * as maintenance from './maintenance';
import * as keygen from './keygen';
import * as runs from './runs';
import * as smoke from './smoke';
import * as switchover from './switchover';
import * as upgrade from './upgrade';
import { register as registerLab } from './lab';
import { register as registerSecrets } from './secrets';
import { register as registerStatus } from './status';
import { register as registerDoctor } from './doctor';
import { register as registerValidate } from './validate';
import { register as registerEtcd } from './etcd';
import * as upgradePatroni from './upgrade-patroni';
import * as history from './history';
import * as operatorOption from './operator';
import * as backup from './backup';
import * as drill from './drill';
import * as restore from './restore';
import * as schedule from './schedule';
import { register as registerGuard } from './guard';

/** Every command module exports `register(program)`; add one line per module. */
export function registerCommands(program: Command): void {
  void program;
  keygen.register(program);
  codecServer.register(program);
  smoke.register(program);
  runs.register(program);
  registerLab(program);
  registerValidate(program);
  registerSecrets(program);
  registerStatus(program);
  registerDoctor(program);
  deploy.register(program);
  switchover.register(program);
  maintenance.register(program);
  registerEtcd(program);
  upgrade.register(program);
  upgradePatroni.register(program); // `pgha upgrade patroni` in the same `upgrade` group
  history.register(program);
  schedule.register(program);
  // last: gives every command above `--by` (who is acting)
  operatorOption.register(program);
  backup.register(program);
  drill.register(program);
  restore.register(program);
  registerGuard(program);
}
