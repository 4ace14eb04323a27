/**
 * `pgha validate --cluster FILE [--json]`: check an inventory without connecting anywhere. Prints
 * every problem as `field.path (line L, column C): found ...; expected ...; Fix: ...` and exits 1,
 * or prints a short summary of the cluster and exits 0 (warnings do not fail it).
 */
import type { Command } from 'commander';
import { lstat } from 'node:fs/promises';
import { checkInventoryFile, formatIssues, SECRET_NAMES, type Inventory } from '../../runbooks/inventory';

function describeInstall(inv: Inventory): string {
  return (['postgresql', 'patroni', 'etcd', 'haproxy'] as const)
    .map((c) => {
      const i = inv.install[c];
      return `${c} ${i.method}${i.method === 'offline' ? ` (${i.dir})` : ''}`;
    })
    .join(', ');
}

/** The short summary printed for a valid inventory. */
export function summarize(inv: Inventory, file: string): string[] {
  const nodes = (role: 'etcd' | 'postgres' | 'haproxy') =>
    inv.nodes[role].map((n) => `${n.hostname}/CT ${n.vmid}/${n.ip}`).join(', ');
  const p = inv.ports;
  const refs = SECRET_NAMES.map((n) => inv.secrets[n]);
  return [
    `${file}: valid`,
    `  cluster ${inv.cluster}, subnet ${inv.subnet}, Proxmox ${inv.proxmox.user}@${inv.proxmox.host}:${inv.proxmox.port}`,
    `  etcd ${inv.versions.etcd} x${inv.nodes.etcd.length}: ${nodes('etcd')} (client ${p.etcdClient}, peer ${p.etcdPeer})`,
    `  PostgreSQL ${inv.versions.postgresql} + Patroni ${inv.versions.patroni} x${inv.nodes.postgres.length}: ${nodes('postgres')} (postgres ${p.postgresql}, REST API ${p.patroniRestApi})`,
    `  HAProxy x${inv.nodes.haproxy.length}: ${nodes('haproxy')} (write ${p.haproxyWrite}, read ${p.haproxyRead}, stats ${p.haproxyStats})`,
    `  Patroni scope ${inv.patroni.scope}, namespace ${inv.patroni.namespace}, ttl ${inv.patroni.ttl}s, loop_wait ${inv.patroni.loopWait}s, retry_timeout ${inv.patroni.retryTimeout}s, maximum_lag_on_failover ${inv.patroni.maximumLagOnFailover}`,
    `  PostgreSQL ${inv.postgresql.major}: data ${inv.postgresql.dataDir}, bin ${inv.postgresql.binDir}`,
    `  install: ${describeInstall(inv)}`,
    `  secrets: ${refs.filter((r) => r.startsWith('file:')).length} file: and ${refs.filter((r) => r.startsWith('env:')).length} env: references`,
  ];
}

export function register(program: Command): void {
  program
    .command('validate')
    .description(
      'check an inventory file without connecting anywhere: every error names the field, what was found, what is expected and the fix',
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .option('--json', 'print {valid, issues} as JSON')
    .action(async (opts: { cluster: string; json?: boolean }) => {
      const r = await checkInventoryFile(opts.cluster);
      const errors = r.issues.filter((i) => i.severity === 'error');
      if (opts.json) {
        process.stdout.write(
          `${JSON.stringify({ file: r.file, valid: errors.length === 0, issues: r.issues.map((i) => ({ ...i, location: r.where(i.path) })) }, null, 2)}\n`,
        );
        process.exitCode = errors.length ? 1 : 0;
        return;
      }
      const lines = formatIssues(r);
      if (!r.inventory) {
        process.stderr.write(
          `${r.file}: ${errors.length} error${errors.length === 1 ? '' : 's'}\n${lines.map((l) => `  ${l}`).join('\n')}\n`,
        );
        process.exitCode = 1;
        return;
      }
      const out = summarize(r.inventory, r.file);
      // Local facts only (no connection): which file: secrets do not exist yet on this machine.
      const missing: string[] = [];
      for (const n of SECRET_NAMES) {
        const ref = r.inventory.secrets[n];
        if (ref.startsWith('file:'))
          await lstat(ref.slice(5)).catch(() => missing.push(`secrets.${n} (${ref})`));
      }
      if (missing.length)
        out.push(
          `  note: not on this machine yet: ${missing.join(', ')}; create them with: pgha secrets init --cluster ${opts.cluster}`,
        );
      for (const l of lines) out.push(`  ${l}`);
      process.stdout.write(`${out.join('\n')}\n`);
    });
}
