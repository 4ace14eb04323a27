/** PostgreSQL binaries + Patroni on one node, and starting Patroni. */
import { posix } from 'node:path';
import type { Inventory } from '../../runbooks/schema';
import { markCluster, nodeCt, renderFor } from './context';
import { ensurePatroniVenv, ensurePostgresBuild, runOnlineRecipe } from './packages';
import { ensureService } from './service';
import { ensureDir, ensureFiles, run, succeeds } from './shell';
import { SERVICE } from './types';
import type { Ct, NodeChange, NodeDeps } from './types';

/** The OS user PostgreSQL runs as, with its home. */
async function ensureOsUser(ct: Ct, inv: Inventory): Promise<string[]> {
  const pg = inv.postgresql;
  if (await succeeds(ct, ['id', '-u', pg.osUser])) return [];
  await run(ct, [
    'useradd',
    '--system',
    '--user-group',
    '--home-dir',
    pg.home,
    '--shell',
    '/bin/bash',
    pg.osUser,
  ]);
  return [`user ${pg.osUser}`];
}

async function ensureSoftware(ct: Ct, inv: Inventory): Promise<string[]> {
  const i = inv.install;
  return [
    ...(i.postgresql.method === 'offline'
      ? await ensurePostgresBuild(ct, inv, i.postgresql.dir)
      : await runOnlineRecipe(ct, inv, 'postgresql')),
    ...(i.patroni.method === 'offline'
      ? await ensurePatroniVenv(ct, inv, i.patroni.dir, i.patroni.venv)
      : await runOnlineRecipe(ct, inv, 'patroni')),
  ];
}

/**
 * Configured but not started (bootstrap and join are their own steps). A running Patroni whose
 * configuration was not applied yet is reloaded (SIGHUP), not restarted.
 */
export async function installPostgres(
  deps: NodeDeps,
  args: { inv: Inventory; hostname: string },
): Promise<NodeChange> {
  const { inv, hostname } = args;
  const { node, ct } = await nodeCt(deps, inv, 'postgres', hostname);
  const pg = inv.postgresql;
  await markCluster(ct, inv);
  const installed = await ensureOsUser(ct, inv);
  await ensureDir(ct, pg.home, pg.osUser, 0o700);
  await ensureDir(ct, posix.dirname(pg.dataDir), pg.osUser, 0o700);
  installed.push(...(await ensureSoftware(ct, inv)));
  await ensureDir(ct, inv.patroni.configDir, pg.osUser, 0o750);
  const rendered = await renderFor(inv, 'postgres', node);
  const files = await ensureFiles(ct, rendered);
  await deps.afterFiles?.({ node: hostname, service: SERVICE.postgres });
  const services = await ensureService(ct, {
    unit: SERVICE.postgres,
    files: rendered.map((f) => f.path),
    filesChanged: files.length > 0,
    running: false,
    onChange: 'reload',
  });
  return { node: hostname, vmid: ct.vmid, installed, files, services };
}

/** Starts Patroni on a node (idempotent: a running one is left alone). */
export async function startPatroni(
  deps: NodeDeps,
  args: { inv: Inventory; hostname: string },
): Promise<NodeChange> {
  const { inv, hostname } = args;
  const { node, ct } = await nodeCt(deps, inv, 'postgres', hostname);
  const rendered = await renderFor(inv, 'postgres', node);
  const services = await ensureService(ct, {
    unit: SERVICE.postgres,
    files: rendered.map((f) => f.path),
    filesChanged: false,
    running: true,
    onChange: 'reload',
  });
  return { node: hostname, vmid: ct.vmid, installed: [], files: [], services };
}
