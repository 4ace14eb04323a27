/** What the gates share: the deps they are given and GET /patroni of a member. */
import type { Inventory } from '../../runbooks/schema';
import { restApi } from '../../runbooks/topology';
import { normaliseRole } from '../patroni';
import type { PatroniActivities, PatroniNodeStatus } from '../patroni';
import type { PostgresActivities } from '../postgres';
import type { StatusActivities } from '../status';

export interface GateDeps {
  patroni: PatroniActivities;
  postgres: PostgresActivities;
  /** The status collector for an inventory (its HAProxy runtime API goes through that cluster's Proxmox host). */
  statusFor(inv: Inventory): Promise<StatusActivities>;
}

/** The member's role, `master` (Patroni < 4) and `primary` as one. */
export const roleOf = (s: PatroniNodeStatus | null | undefined) => normaliseRole(s?.role);

/** GET /patroni of a member, or null when it does not answer (yet). */
export async function patroniOf(
  deps: Pick<GateDeps, 'patroni'>,
  inv: Inventory,
  hostname: string,
): Promise<PatroniNodeStatus | null> {
  try {
    return (await deps.patroni.patroniGetPatroni({ target: restApi(inv, hostname) })).body;
  } catch {
    return null; // not answering yet
  }
}
