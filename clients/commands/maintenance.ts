/**
 * Maintenance runbooks from the command line, with live step progress like `pgha deploy`:
 *
 *   pgha restart --cluster FILE [--member pg103 ...] [--leader switchover|in-place] [--pending-only]
 *   pgha config set --cluster FILE key=value ... [--restart switchover|in-place|none]
 *   pgha reinit --cluster FILE --member pg103
 *
 * Bad input (an unknown member, a malformed key=value, a non-DCS key) is refused here before
 * anything starts, with the same messages the runbooks give (exit status 2).
 */
import type { Client } from '@temporalio/client';
import type { Command } from 'commander';
import type { RestartResult } from '../../activities/maintenance';
import { ConfigKeyError, classifyConfig } from '../../runbooks/patroni-config';
import type { ConfigValue } from '../../runbooks/patroni-config';
import type { Inventory } from '../../runbooks/schema';
import type { reinitReplica, ReinitReport } from '../../workflows/reinit';
import { orPlan } from '../../workflows/dry-run';
import type {
  ApplyConfigReport,
  RestartReport,
  applyConfig,
  rollingRestart,
} from '../../workflows/rolling-restart';
import { withClient } from '../connection';
import { inventoryInput } from '../inventory-input';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';

class UsageError extends Error {}

function usage(err: unknown): boolean {
  if (err instanceof UsageError || err instanceof ConfigKeyError) {
    console.error(`pgha: ${err.message}`);
    process.exitCode = 2;
    return true;
  }
  return false;
}

function checkMembers(inv: Inventory, members: string[]): void {
  const known = inv.nodes.postgres.map((n) => n.hostname);
  const unknown = members.filter((m) => !known.includes(m));
  if (unknown.length) {
    throw new UsageError(
      `--member ${unknown.join(', ')}: not a member of cluster ${inv.cluster} (its members: ${known.join(', ')})`,
    );
  }
}

function mode<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) {
    throw new UsageError(`${flag} ${value}: use ${allowed.join(' or ')}`);
  }
  return value as T;
}

/** `key=value` pairs: the value as typed (a string); the runbook types DCS keys and checks parameters. */
export function parseAssignments(pairs: string[]): Record<string, ConfigValue> {
  if (pairs.length === 0)
    throw new UsageError('nothing to set: give one or more key=value (e.g. work_mem=8MB)');
  const set: Record<string, ConfigValue> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new UsageError(`${JSON.stringify(p)}: expected key=value (e.g. max_connections=200)`);
    const key = p.slice(0, i).trim();
    if (key in set) throw new UsageError(`${key} is given twice`);
    set[key] = p.slice(i + 1);
  }
  classifyConfig(set); // names and DCS value types, before anything starts
  return set;
}

function memberLine(m: RestartResult): string {
  const how =
    m.action === 'restarted'
      ? 'restarted'
      : m.action === 'already-restarted'
        ? 'found restarted already (resumed run or switchover)'
        : `skipped (${m.reason ?? 'nothing to do'})`;
  const lag = m.lagBytes === undefined || m.lagBytes === null ? '' : `, lag ${m.lagBytes} B`;
  return `  ${m.member.padEnd(8)} ${m.role.padEnd(7)} ${how}${lag}, postmaster ${m.postmasterBefore ?? '?'} → ${m.postmasterAfter ?? '?'} (${(m.tookMs / 1000).toFixed(1)} s)`;
}

export function describeRestart(r: RestartReport): string {
  const lines = [
    `leader ${r.leaderBefore}${r.leaderAfter !== r.leaderBefore ? ` → ${r.leaderAfter} (switchover)` : ''}`,
  ];
  for (const m of r.members) lines.push(memberLine(m));
  if (r.members.length === 0) lines.push('  no member needed a restart');
  return lines.join('\n');
}

export function describeConfig(r: ApplyConfigReport): string {
  const lines: string[] = [];
  for (const c of r.changed) {
    lines.push(
      `changed ${c.key}: ${c.from === null || c.from === undefined ? '(unset)' : String(c.from)} → ${String(c.to)}${c.needsRestart ? ' (needs a restart)' : ''}`,
    );
  }
  for (const u of r.unchanged) lines.push(`unchanged ${u.key} (already ${String(u.value)})`);
  if (r.restart) lines.push(describeRestart(r.restart));
  else if (r.pendingRestart.length) {
    lines.push(`pending restart on ${r.pendingRestart.join(', ')}: run pgha restart --pending-only`);
  }
  lines.push(`restarted: ${r.restarted.join(', ') || 'none'}`);
  return lines.join('\n');
}

async function follow<T>(
  client: Client,
  handle: Awaited<ReturnType<typeof startRunbook>>,
  wait: boolean,
  describe: (r: T) => string,
) {
  console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
  if (!wait) return;
  const o = await watchRun(client, handle);
  if (o.status === 'COMPLETED') console.log(describe((await handle.result()) as T));
}

export function register(program: Command): void {
  program
    .command('restart')
    .description(
      'rolling restart: replicas one at a time (each back streaming before the next), the leader last',
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option('--member <name...>', 'only these members (default: all)')
    .option('--leader <how>', 'restart the leader in-place or after a switchover', 'in-place')
    .option('--pending-only', 'only members for which Patroni reports pending_restart')
    .option('--dry-run', 'run the pre-check and print the ordered plan per member; restart nothing')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action(
      async (o: {
        cluster: string;
        member?: string[];
        leader: string;
        pendingOnly?: boolean;
        dryRun?: boolean;
        wait: boolean;
      }) => {
        try {
          const leader = mode('--leader', o.leader, ['in-place', 'switchover'] as const);
          await withClient(async (client) => {
            const { input, inventory } = await inventoryInput(o.cluster);
            if (o.member) checkMembers(inventory, o.member);
            const handle = await startRunbook<typeof rollingRestart>(client, {
              workflow: 'rollingRestart',
              args: [
                {
                  inventory: input,
                  members: o.member,
                  leader,
                  onlyPendingRestart: o.pendingOnly ?? false,
                  ...(o.dryRun ? { dryRun: true } : {}),
                },
              ],
              cluster: inventory.cluster,
              operation: 'restart',
            });
            await follow(client, handle, o.wait, orPlan(describeRestart));
          });
        } catch (err) {
          if (!usage(err)) throw err;
        }
      },
    );

  const config = program.command('config').description("the cluster's dynamic (DCS) configuration");
  config
    .command('set')
    .description(
      'set DCS keys (ttl, loop_wait, ...) and PostgreSQL parameters (work_mem=8MB ...) cluster-wide, then restart the members that need it',
    )
    .argument('<key=value...>', 'e.g. work_mem=8MB max_connections=200 loop_wait=10')
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option(
      '--restart <how>',
      'restart members with pending_restart: in-place, switchover or none',
      'in-place',
    )
    .option(
      '--dry-run',
      'compare with the live config and print what would change and restart; change nothing',
    )
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action(
      async (pairs: string[], o: { cluster: string; restart: string; dryRun?: boolean; wait: boolean }) => {
        try {
          const restart = mode('--restart', o.restart, ['in-place', 'switchover', 'none'] as const);
          const set = parseAssignments(pairs);
          await withClient(async (client) => {
            const { input, inventory } = await inventoryInput(o.cluster);
            const handle = await startRunbook<typeof applyConfig>(client, {
              workflow: 'applyConfig',
              args: [{ inventory: input, set, restart, ...(o.dryRun ? { dryRun: true } : {}) }],
              cluster: inventory.cluster,
              operation: 'config',
            });
            await follow(client, handle, o.wait, orPlan(describeConfig));
          });
        } catch (err) {
          if (!usage(err)) throw err;
        }
      },
    );

  program
    .command('reinit')
    .description(
      're-initialise a replica: wipe its data and clone it again from the leader (never the leader)',
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .requiredOption('--member <name>', 'the replica, e.g. pg103')
    .option('--dry-run', 'run the pre-check and print the ordered plan; touch nothing')
    .option('--no-wait', 'start it and return (follow with `pgha watch`)')
    .action(async (o: { cluster: string; member: string; dryRun?: boolean; wait: boolean }) => {
      try {
        await withClient(async (client) => {
          const { input, inventory } = await inventoryInput(o.cluster);
          checkMembers(inventory, [o.member]);
          const handle = await startRunbook<typeof reinitReplica>(client, {
            workflow: 'reinitReplica',
            args: [{ inventory: input, member: o.member, dryRun: o.dryRun }],
            cluster: inventory.cluster,
            operation: 'reinit',
          });
          await follow(
            client,
            handle,
            o.wait,
            orPlan((r: ReinitReport) =>
              [
                `${r.member} re-initialised from ${r.leader}: ${r.reinit.action === 'restarted' ? 're-cloned' : 'found re-cloned already (resumed run)'}` +
                  `, lag ${r.reinit.lagBytes ?? '?'} B, postmaster ${r.reinit.postmasterBefore ?? '?'} → ${r.reinit.postmasterAfter ?? '?'}`,
                `marker row ${r.markerRow} written on ${r.leader} before is on ${r.member}`,
              ].join('\n'),
            ),
          );
        });
      } catch (err) {
        if (!usage(err)) throw err;
      }
    });
}
