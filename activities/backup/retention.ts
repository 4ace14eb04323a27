/**
 * Barman's retention policy, converging on what the backup CT shows: the policy in the server's
 * retention drop-in (render/barman.ts; written only when it differs), then `barman list-backups`
 * read for what Barman marks OBSOLETE under it, each deleted with `barman delete` and checked
 * gone. A retry finds the file as wanted and nothing OBSOLETE left: the same end state.
 * (`barman cron`, every minute, applies the same policy on its own; this makes it happen now.)
 */
import { parseRetention } from '../../runbooks/retention';
import type { Inventory } from '../../runbooks/schema';
import { backupNode } from '../../runbooks/topology';
import { barmanServer, renderBarmanRetentionConf } from '../render';
import { barmanCli, listBackups } from './cli';
import type { BackupDeps } from './types';

export interface RetentionResult {
  policy: string;
  /** Whether the policy file changed in this run. */
  configured: boolean;
  /** Backup ids deleted as OBSOLETE. */
  deleted: string[];
  /** Backup ids kept (DONE), newest last. */
  kept: string[];
}

export async function applyRetention(
  deps: BackupDeps,
  args: { inv: Inventory; policy: string },
): Promise<RetentionResult> {
  const { inv } = args;
  const policy = parseRetention('retention', args.policy);
  const node = backupNode(inv);
  if (!node) throw new Error(`cluster ${inv.cluster} has no backup CT (nodes.backup)`);
  const server = barmanServer(inv);
  const f = renderBarmanRetentionConf(inv, policy);
  const sh = await deps.shellFor(inv.proxmox);
  const { changed } = await sh.push(node.vmid, f.path, f.content, {
    mode: f.mode,
    owner: f.owner,
    group: f.group,
  });
  const obsolete = (await listBackups(deps, inv)).filter((b) => b.retention_status === 'OBSOLETE');
  for (const b of obsolete) await barmanCli(deps, inv, ['delete', server, b.backup_id], 600_000);
  const after = await listBackups(deps, inv);
  const left = after.filter((b) => obsolete.some((o) => o.backup_id === b.backup_id));
  if (left.length > 0)
    throw new Error(
      `barman delete ${server} left OBSOLETE backups ${left.map((b) => b.backup_id).join(', ')} (minimum_redundancy or a keep?): see barman show-backup ${server} <id>`,
    );
  return {
    policy,
    configured: changed,
    deleted: obsolete.map((b) => b.backup_id),
    kept: after.filter((b) => b.status === 'DONE').map((b) => b.backup_id),
  };
}
