/**
 * `pgha upgrade postgresql --cluster FILE --to 18 --major [--dry-run] [--approve]`: the major
 * upgrade with pg_upgrade (workflows/upgrade-major.ts), started, followed and reported. Only
 * parses and calls; the runbook decides.
 */
import type { Duration } from '@temporalio/common';
import type { UpgradeMajorReport, upgradeMajor } from '../../workflows/upgrade-major';
import { withClient } from '../connection';
import { inventoryInput } from '../inventory-input';
import { startRunbook } from '../runbook';
import { watchRun } from './runs';
import { parseBytes } from './upgrade';
import type { UpgradeCliOptions } from './upgrade';

export function describeUpgradeMajor(r: UpgradeMajorReport): string {
  const lines = [`${r.outcome}: ${r.message}`, `PostgreSQL ${r.from} → ${r.to}; leader ${r.leader}`];
  if (r.outcome === 'dry-run') r.plan.forEach((s, i) => lines.push(`${i + 1}. ${s}`));
  if (r.check)
    lines.push(
      `checksums ${r.check.checksums ? 'on' : 'off'} (matched); extensions: ${r.check.extensions.join(', ') || 'none'}`,
    );
  if (r.pgUpgrade)
    lines.push(`pg_upgrade --link: ${r.pgUpgrade.action} in ${(r.pgUpgrade.tookMs / 1000).toFixed(1)} s`);
  if (r.downMs !== undefined)
    lines.push(`writes down (stop → leader up on ${r.to}): ${(r.downMs / 1000).toFixed(1)} s`);
  if (r.inventoryChange) lines.push(r.inventoryChange);
  lines.push(`took ${(r.tookMs / 1000).toFixed(1)} s`);
  return lines.join('\n');
}

export async function upgradeMajorCommand(o: UpgradeCliOptions): Promise<void> {
  if (!/^\d{1,3}(\.\d{1,3}){0,2}$/.test(o.to)) {
    console.error(`pgha: --to ${JSON.stringify(o.to)} is not a PostgreSQL major version: use e.g. --to 18`);
    process.exitCode = 2;
    return;
  }
  const maxLagBytes = parseBytes('--max-lag', o.maxLag);
  await withClient(async (client) => {
    const { input, inventory } = await inventoryInput(o.cluster);
    const handle = await startRunbook<typeof upgradeMajor>(client, {
      workflow: 'upgradeMajor',
      args: [
        {
          inventory: input,
          to: o.to,
          dryRun: o.dryRun ?? false,
          approve: o.approve ?? false,
          approvalTimeout: o.approve ? (o.approvalTimeout as Duration) : undefined,
          maxLagBytes,
        },
      ],
      cluster: inventory.cluster,
      operation: 'upgrade',
      suffix: 'major',
    });
    console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
    if (!o.wait) return;
    const out = await watchRun(client, handle);
    if (out.status === 'COMPLETED') console.log(describeUpgradeMajor(await handle.result()));
  });
}
