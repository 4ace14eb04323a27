/**
 * majorBackupRetire, on the backup CT while the cluster is stopped for the upgrade (before the
 * point of no return): the old major's Barman server stops streaming — its receive-wal service
 * stopped, any pg_receivewal left (one `barman cron` started) ended, and its server file rewritten
 * with `active = false` — so that no WAL of the new major ever lands in the old major's archive
 * (the new cluster reuses the replication slot's name). Its backups stay, listed and restorable to
 * the old major. The fresh backup afterwards goes to the new major's server (`<cluster>-pg<major>`,
 * installed by installBackup with the new inventory). The rollback undoes this with installBackup
 * of the old inventory (the server file active again, receive-wal started: the old slot kept its WAL).
 * Converges: a retired server is only checked.
 */
import type { Inventory } from '../../runbooks/schema';
import { BARMAN_RECEIVE_WAL, requireBackupNode } from '../nodes/backup';
import { ensureFiles, probe, run } from '../nodes/shell';
import type { Ct } from '../nodes/types';
import { pollUntil } from '../poll';
import { barmanServer, renderBarmanServerConf } from '../render';
import { fail } from './common';
import type { MajorDeps } from './types';

/** The PIDs of pg_receivewal processes in the CT (it has no procps: read from /proc). Constant script. */
const RECEIVERS =
  'for p in /proc/[0-9]*; do tr "\\0" " " <"$p/cmdline" 2>/dev/null | grep -q "^[^ ]*/pg_receivewal " && echo "${p#/proc/}"; done; true';

async function receivers(ct: Ct): Promise<string[]> {
  const r = await probe(ct, ['sh', '-c', RECEIVERS]);
  return r.stdout.split('\n').filter((l) => /^\d+$/.test(l.trim()));
}

export async function majorBackupRetire(
  deps: MajorDeps,
  args: { inv: Inventory },
): Promise<{ server: string; did: string[] }> {
  const { inv } = args;
  const node = requireBackupNode(inv);
  const ct: Ct = { sh: await deps.shellFor(inv.proxmox), vmid: node.vmid };
  const server = barmanServer(inv);
  const did: string[] = [];
  if ((await probe(ct, ['systemctl', 'is-active', BARMAN_RECEIVE_WAL])).stdout.trim() === 'active') {
    await run(ct, ['systemctl', 'stop', BARMAN_RECEIVE_WAL], 60_000);
    did.push(`${BARMAN_RECEIVE_WAL} stopped`);
  }
  if ((await ensureFiles(ct, [renderBarmanServerConf(inv, { retired: true })])).length)
    did.push(`server ${server} retired (active = false)`);
  const left = await receivers(ct);
  if (left.length) {
    await probe(ct, ['kill', '--', ...left]);
    did.push(`pg_receivewal ${left.join(' ')} ended`);
  }
  await pollUntil(
    { what: `no pg_receivewal left on ${node.hostname}`, timeoutMs: 30_000, intervalMs: 500 },
    async () => {
      const now = await receivers(ct);
      return { done: now.length === 0, value: undefined, describe: `pg_receivewal ${now.join(' ')}` };
    },
  ).catch((err: unknown) => fail(`Barman's WAL receiver for ${server} did not end: ${String(err)}`));
  return { server, did };
}
