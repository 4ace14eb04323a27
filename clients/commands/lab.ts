/**
 * `pgha lab ...`: the local Proxmox lab (LXC CTs behind an sshd with `pct`). See lab/index.ts.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { down, fault, formatStatus, reset, status, up } from '../../lab';

function vmidArg(value: string): number {
  if (!/^\d+$/.test(value))
    throw new InvalidArgumentError(`expected a CT id such as 103, got ${JSON.stringify(value)}`);
  return Number(value);
}

export function register(program: Command): void {
  const lab = program
    .command('lab')
    .description('the local Proxmox lab: LXC CTs from runbooks/clusters/lab.yaml behind an sshd with pct')
    .option('-i, --inventory <file>', 'lab inventory (default runbooks/clusters/lab.yaml)');
  const inventory = () => lab.opts<{ inventory?: string }>().inventory;

  lab
    .command('up')
    .description('create or repair the lab (a no-op when it is up) and wait until systemd runs in every CT')
    .option(
      '--prune',
      'also remove lab CTs that are not in this inventory (other lab inventories are kept otherwise)',
    )
    .action((o: { prune?: boolean }) => up({ inventory: inventory(), prune: o.prune }));
  lab
    .command('down')
    .description(
      'with -i FILE: remove that inventory’s CTs (bridge, sshd and the lab dir go with the last CT); without: everything the lab made; keeps /var/cache/pgha',
    )
    .action(() => down({ inventory: inventory() }));
  lab
    .command('reset')
    .description('destroy the CTs and make them fresh from the base image')
    .action(() => reset({ inventory: inventory() }));
  lab
    .command('status')
    .description('one line per CT and the Proxmox stand-in; exit status 3 when the lab is not healthy')
    .option('--json', 'machine-readable output')
    .action((opts: { json?: boolean }) => {
      const s = status({ inventory: inventory() });
      process.stdout.write(opts.json ? `${JSON.stringify(s, null, 2)}\n` : `${formatStatus(s)}\n`);
      if (!s.healthy) process.exitCode = 3;
    });

  const f = lab.command('fault').description('fault injection for tests');
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  f.command('stop-ct')
    .argument('<vmid>', 'the CT id', vmidArg)
    .description('hard-stop a CT (pct stop)')
    .action((vmid: number) => say(fault.stopCt(vmid, { inventory: inventory() })));
  f.command('destroy-ct')
    .argument('<vmid>', 'the CT id', vmidArg)
    .description(
      'destroy a CT (pct destroy: stopped, config and root filesystem removed; lab up recreates it empty)',
    )
    .action((vmid: number) => say(fault.destroyCt(vmid, { inventory: inventory() })));
  f.command('partition')
    .argument('<vmid>', 'the CT id', vmidArg)
    .description('cut a CT off the lab bridge (its veth leaves pglab0)')
    .action((vmid: number) => say(fault.partition(vmid, { inventory: inventory() })));
  f.command('heal')
    .argument('<vmid>', 'the CT id', vmidArg)
    .description('put a partitioned CT back on the bridge')
    .action((vmid: number) => say(fault.heal(vmid, { inventory: inventory() })));
  f.command('kill')
    .argument('<vmid>', 'the CT id', vmidArg)
    .argument('<service>', 'the systemd unit')
    .description("kill a systemd service's processes inside a CT (SIGKILL by default)")
    .option('-s, --signal <signal>', 'signal to send', 'SIGKILL')
    .action((vmid: number, service: string, opts: { signal: string }) =>
      say(fault.kill(vmid, service, opts.signal, { inventory: inventory() })),
    );
}
