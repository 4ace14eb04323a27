/**
 * `pgha upgrade <component>`: the rolling upgrade runbooks, with live step progress.
 *
 *   pgha upgrade postgresql --cluster FILE --to 18.6 [--dry-run] [--approve] [--max-lag 10MiB] [--max-xact-age 15s]
 *   pgha upgrade postgresql --cluster FILE --to 18 --major [--dry-run] [--approve]   (pg_upgrade: ./upgrade-major.ts)
 *
 * The hook for other components (`pgha upgrade patroni`): `upgradeCommand(program)` returns the one
 * `upgrade` command group (made on first use), `upgradeOptions(cmd)` adds the options every upgrade
 * takes, `upgradeInputOf(o)` turns them into the runbooks' shared argument shape (UpgradeInput), and
 * `runUpgrade(...)` starts, follows and reports the run. A component's module registers its
 * subcommand with those (one line in clients/commands/index.ts).
 *
 * Bad input (a version that is not one, a size or a duration that does not parse) is refused here
 * before anything starts (exit status 2); the runbook checks the same again.
 */
import type { Duration } from '@temporalio/common';
import type { Command } from 'commander';
import { pgVersionNum } from '../../runbooks/pg-version';
import type { UpgradeInput, UpgradeReport, upgradePostgresql } from '../../workflows/upgrade-postgresql';
import { withClient } from '../connection';
import { inventoryInput } from '../inventory-input';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';
import { upgradeMajorCommand } from './upgrade-major';

export class UpgradeUsageError extends Error {}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** `10MiB`, `512kB`, `1048576` → bytes (binary units, as PostgreSQL reads sizes). */
export function parseBytes(flag: string, v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  const n = m && unit !== undefined ? Math.round(Number(m[1]) * unit) : NaN;
  if (!(n > 0))
    throw new UpgradeUsageError(`${flag} ${JSON.stringify(v)}: give a size such as 10MiB, 512kB or 1048576`);
  return n;
}

/** `15s`, `500ms`, `2m` → ms. */
export function parseMs(flag: string, v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(v);
  const n = m ? Math.round(Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000)) : NaN;
  if (!(n > 0))
    throw new UpgradeUsageError(`${flag} ${JSON.stringify(v)}: give a duration such as 15s, 500ms or 2m`);
  return n;
}

/** The options every `pgha upgrade <component>` takes. */
export interface UpgradeCliOptions {
  cluster: string;
  to: string;
  dryRun?: boolean;
  approve?: boolean;
  approvalTimeout: string;
  maxLag: string;
  maxXactAge: string;
  wait: boolean;
  /** `upgrade postgresql --major`: pg_upgrade to the next major (workflows/upgrade-major.ts). */
  major?: boolean;
}

export function upgradeOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .requiredOption('--to <version>', 'the version to upgrade to')
    .option('--dry-run', 'check the cluster and print the ordered plan per node; touch nothing')
    .option('--approve', 'stop at gate `switchover` until `pgha approve <id> --gate switchover --by NAME`')
    .option('--approval-timeout <duration>', 'how long the gate waits for a decision', '1h')
    .option('--max-lag <size>', 'every replica must stream within this lag', '10MiB')
    .option('--max-xact-age <duration>', 'no transaction on the leader older than this', '15s')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)');
}

/** The options as the runbooks' argument shape (without the inventory). */
export function upgradeInputOf(o: UpgradeCliOptions): Omit<UpgradeInput, 'inventory'> {
  return {
    to: o.to,
    dryRun: o.dryRun ?? false,
    approve: o.approve ?? false,
    approvalTimeout: o.approve ? (o.approvalTimeout as Duration) : undefined,
    maxLagBytes: parseBytes('--max-lag', o.maxLag),
    maxXactAgeMs: parseMs('--max-xact-age', o.maxXactAge),
  };
}

const groups = new WeakMap<Command, Command>();

/** The `upgrade` command group of this program (made on first use): components add subcommands to it. */
export function upgradeCommand(program: Command): Command {
  let g = groups.get(program);
  if (!g) {
    g = program
      .command('upgrade')
      .description('rolling upgrades, one member at a time, one switchover at most');
    groups.set(program, g);
  }
  return g;
}

/** The report of an upgrade run, as lines an operator reads at a glance. */
export function describeUpgrade(r: UpgradeReport): string {
  const lines = [`${r.outcome}: ${r.message}`];
  if (r.outcome === 'dry-run' || r.outcome === 'already-at-target') {
    r.plan.forEach((p, i) => {
      lines.push(`${i + 1}. ${p.node} (${p.role}, runs ${p.running ?? '?'})`);
      for (const s of p.steps) lines.push(`     - ${s}`);
    });
    return lines.join('\n');
  }
  for (const m of r.members) {
    lines.push(
      `  ${m.member.padEnd(8)} ${m.from ?? '?'} → ${m.to ?? '?'} ${m.action} (${(m.tookMs / 1000).toFixed(1)} s)`,
    );
  }
  if (r.switchover) {
    lines.push(`switchover ${r.switchover.from ?? '?'} → ${r.switchover.to} (${r.switchover.outcome})`);
  }
  lines.push(
    `leader ${r.leaderBefore} → ${r.leaderAfter}; timeline ${r.timelineBefore ?? '?'} → ${r.timelineAfter ?? '?'}; took ${(r.tookMs / 1000).toFixed(1)} s`,
  );
  return lines.join('\n');
}

/** Starts an upgrade runbook (`workflow` type) with the shared argument shape, follows it, prints its report. */
export async function runUpgrade(
  workflow: string,
  component: string,
  o: UpgradeCliOptions,
  describe: (r: UpgradeReport) => string = describeUpgrade,
): Promise<void> {
  try {
    const rest = upgradeInputOf(o);
    await withClient(async (client) => {
      const { input, inventory } = await inventoryInput(o.cluster);
      const handle = await startRunbook<typeof upgradePostgresql>(client, {
        workflow,
        args: [{ inventory: input, ...rest }],
        cluster: inventory.cluster,
        operation: 'upgrade',
        suffix: component,
      });
      console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
      if (!o.wait) return;
      const out = await watchRun(client, handle);
      if (out.status === 'COMPLETED') console.log(describe(await handle.result()));
    });
  } catch (err) {
    if (err instanceof UpgradeUsageError) {
      console.error(`pgha: ${err.message}`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}

export function register(program: Command): void {
  upgradeOptions(
    upgradeCommand(program)
      .command('postgresql')
      .description(
        'rolling PostgreSQL minor upgrade: replicas one at a time (out of the read port, new build beside the old, restart, back), one switchover, the old leader last',
      ),
  )
    .option(
      '--major',
      'a major upgrade with pg_upgrade --link (--to 18): the cluster stops; gate `pg_upgrade` with --approve',
    )
    .action(async (o: UpgradeCliOptions) => {
      if (o.major) {
        try {
          await upgradeMajorCommand(o);
        } catch (err) {
          if (!(err instanceof UpgradeUsageError)) throw err;
          console.error(`pgha: ${err.message}`);
          process.exitCode = 2;
        }
        return;
      }
      if (pgVersionNum(o.to) === null) {
        console.error(
          `pgha: --to ${JSON.stringify(o.to)} is not a PostgreSQL minor version: use e.g. --to 18.6`,
        );
        process.exitCode = 2;
        return;
      }
      await runUpgrade('upgradePostgresql', 'postgresql', o);
    });
}
