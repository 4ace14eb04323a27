/**
 * `pgha doctor --cluster FILE [--json]`: the seed's Troubleshooting section as checks (etcd's bind
 * addresses and ports, Patroni reaching etcd, the data directory, replication settings, pg_hba,
 * HAProxy's view, one timeline, Patroni's timing, versions, clock skew), each with its remedy.
 * Read-only: it asks etcd, Patroni, PostgreSQL and, through the Proxmox host, the CTs; it changes
 * nothing. Exit code as `pgha status`: 0 every check passes, 1 a warning or a check that could not
 * run, 2 a check failed.
 */
import type { Command } from 'commander';
import { Agent } from 'undici';
import { createEtcdActivities } from '../../activities/etcd';
import { createPatroniActivities } from '../../activities/patroni';
import { createPostgresActivities } from '../../activities/postgres';
import { createHaproxyActivities, runnerFromCtExec } from '../../activities/haproxy';
import { ProxmoxHost } from '../../activities/proxmox';
import { doctorExitCode, formatDoctorReport, runDoctor, type DoctorReport } from '../../activities/doctor';
import { statusInputFromInventory } from '../../activities/status';
import { loadInventory } from '../../runbooks/inventory';
import type { Inventory } from '../../runbooks/schema';
import { checkTargets } from './status';

/** Wires the system modules as `pgha status` does and runs every check on the inventory's cluster. */
export async function doctorFromInventory(inv: Inventory): Promise<DoctorReport> {
  const agent = new Agent({ connect: { timeout: 2000 }, headersTimeout: 4000, bodyTimeout: 4000 });
  let proxmox: ProxmoxHost | undefined;
  let ctUnavailable: string | undefined;
  try {
    proxmox = await ProxmoxHost.fromInventory(inv.proxmox, {
      connectTimeoutMs: 10_000,
      commandTimeoutMs: 15_000,
    });
  } catch (err) {
    ctUnavailable = `cannot reach the Proxmox host for pct exec: ${err instanceof Error ? err.message : String(err)}`;
  }
  try {
    const patroni = createPatroniActivities({ agent, timeoutMs: 4000 });
    const postgres = createPostgresActivities({ connectTimeoutMs: 3000, statementTimeoutMs: 3000 });
    return await runDoctor(
      {
        status: {
          etcd: createEtcdActivities({ callTimeoutMs: 2000 }),
          patroni,
          postgres,
          haproxy: proxmox
            ? createHaproxyActivities({ runner: runnerFromCtExec(proxmox), timeoutMs: 5000 })
            : undefined,
        },
        patroni,
        postgres,
        ct: proxmox,
        ctUnavailable,
      },
      inv,
    );
  } finally {
    proxmox?.close();
    await agent.close();
  }
}

export function register(program: Command): void {
  program
    .command('doctor')
    .description(
      "the seed's Troubleshooting section as checks, each with its remedy; read-only (exit 0 all pass, 1 warnings, 2 a check failed)",
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { cluster: string; json?: boolean }) => {
      const inv = await loadInventory(opts.cluster);
      checkTargets(statusInputFromInventory(inv), undefined, [inv.proxmox.host]);
      const report = await doctorFromInventory(inv);
      process.stdout.write(
        opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctorReport(report)}\n`,
      );
      process.exitCode = doctorExitCode(report);
    });
}
