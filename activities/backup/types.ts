/**
 * The backup interface: what pgha's backup runbooks need from a backup manager, whatever it is.
 * Barman implements it (barman.ts); a pgBackRest implementation (>= 2.55, where a site has it)
 * would be a second file with the same shape.
 */
import type { Inventory } from '../../runbooks/schema';
import type { PatroniActivities } from '../patroni';
import type { ProxmoxHost } from '../proxmox';

export interface BackupDeps {
  /** `pct exec` on the Proxmox host of the inventory (SQL in the leader CT, the tool's CLI in the backup CT). */
  shellFor(proxmox: Inventory['proxmox']): Promise<Pick<ProxmoxHost, 'exec' | 'push'>>;
  patroni: Pick<PatroniActivities, 'patroniGetConfig' | 'patroniPatchConfig' | 'patroniGetCluster'>;
}

/** What preparing the cluster for its backup manager changed (empty: already as wanted). */
export interface BackupPrepared {
  roles: string[];
  slot: string[];
}

/** What making the backup tool's receiver the synchronous standby (or no longer) did. */
export interface BackupSynchronous {
  /** backup.synchronous as applied. */
  synchronous: boolean;
  /** Members whose postgresql.auto.conf was changed (empty: all already as wanted). */
  changed: string[];
  /** Synchronous: the leader checked, and the receiver's sync_state there ('sync'). */
  leader?: string;
  syncState?: string;
}

/** The operations a backup manager provides to the runbooks. */
export interface BackupTool {
  /** The cluster side: the tool's roles and grants, its replication slot. Idempotent. */
  prepareCluster(deps: BackupDeps, args: { inv: Inventory; leader: string }): Promise<BackupPrepared>;
}
