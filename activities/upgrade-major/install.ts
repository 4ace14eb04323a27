/**
 * majorInstall: the new major's build beside the old on one member (/usr/pgsql-18.6.0, linked as
 * /usr/pgsql-18), from the offline directory, as deployCluster installs it. Only binaries: the
 * running cluster, its data and its configuration are not touched. Converges (a build there is kept).
 */
import type { Inventory } from '../../runbooks/schema';
import { ensurePostgresBuild } from '../nodes/packages';
import { memberCt, refuse } from './common';
import type { MajorDeps } from './types';

export async function majorInstall(
  deps: MajorDeps,
  args: { next: Inventory; member: string },
): Promise<{ member: string; installed: string[] }> {
  const { next, member } = args;
  const src = next.install.postgresql;
  if (src.method !== 'offline')
    refuse(
      `install.postgresql.method is ${src.method}: the major upgrade installs from an offline directory only; install the new build by the site's own means first`,
    );
  const installed = await ensurePostgresBuild(await memberCt(deps, next, member), next, src.dir);
  return { member, installed };
}
