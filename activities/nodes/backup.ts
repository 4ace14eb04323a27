/**
 * The backup CT (nodes.backup): its storage mounted from the Proxmox host (`pct set -mpN`), the
 * Barman OS user, the PostgreSQL client binaries (pg_basebackup, pg_receivewal, pg_verifybackup)
 * from the same build as the cluster, Barman in a virtualenv from the offline wheels, its rendered
 * configuration and the `barman cron` timer. Each part looks first and acts only where the CT
 * differs; run again, nothing changes and nothing restarts.
 */
import { Failures } from '../../runbooks/failures';
import type { Inventory, Node } from '../../runbooks/schema';
import { resolveClusterSecrets } from '../../runbooks/inventory';
import { backupNode } from '../../runbooks/topology';
import { setTimeout as sleep } from 'node:timers/promises';
import { heartbeat } from '../poll';
import {
  BARMAN_CONF_DIR,
  BARMAN_CRON_SERVICE_PATH,
  BARMAN_CRON_TIMER_PATH,
  BARMAN_RECEIVE_WAL_SERVICE_PATH,
  BARMAN_LOG_DIR,
  barmanExecutable,
  renderBackupFiles,
} from '../render';
import { markCluster } from './context';
import { ensureDebs, ensurePostgresBuild } from './packages';
import { ensureService } from './service';
import { ensureDir, ensureFiles, probe, run, succeeds } from './shell';
import type { Ct, NodeChange, NodeDeps } from './types';

export const BARMAN_TIMER = 'barman-cron.timer';
export const BARMAN_RECEIVE_WAL = 'barman-receive-wal.service';

export class BackupSetupError extends Error {
  override readonly name = Failures.BackupSetupError;
}

/** The backup CT of the inventory, or an error saying how to add one. */
export function requireBackupNode(inv: Inventory): Node {
  const b = backupNode(inv);
  if (!b)
    throw new BackupSetupError(
      `cluster ${inv.cluster} has no backup CT: add nodes.backup: [{ vmid, hostname, ip }] to its inventory`,
    );
  return b;
}

/** Bounded wait until the CT's systemd answers again (after a restart). */
async function waitBooted(ct: Ct, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await probe(ct, ['systemctl', 'is-system-running'], 10_000).catch(() => undefined);
    const state = r?.stdout.trim();
    if (state === 'running' || state === 'degraded') return;
    if (Date.now() >= deadline)
      throw new BackupSetupError(
        `CT ${ct.vmid}: systemd did not finish booting in ${timeoutMs} ms (${state ?? 'no answer'})`,
      );
    heartbeat({ vmid: ct.vmid, step: 'waiting for the CT to boot', state });
    await sleep(1000);
  }
}

/**
 * The storage: with backup.storage.hostDir, the Proxmox mount point mpN of that host directory at
 * backup.storage.path. Proxmox hot-plugs a bind mount into a running CT; where it does not show in
 * the CT (the lab), the CT is restarted once — nothing runs there yet that a restart would hurt.
 */
async function ensureStorage(ct: Ct, inv: Inventory): Promise<string[]> {
  const s = inv.backup.storage;
  if (!s.hostDir) return [];
  if (!ct.sh.setMountPoint || !ct.sh.reboot)
    throw new BackupSetupError('this Proxmox transport cannot set mount points (pct set)');
  const { changed } = await ct.sh.setMountPoint(ct.vmid, s.mountPoint, s.hostDir, s.path);
  const done = changed ? [`mp${s.mountPoint} ${s.hostDir} at ${s.path}`] : [];
  if (await succeeds(ct, ['mountpoint', '-q', s.path])) return done;
  heartbeat({ vmid: ct.vmid, step: `restarting CT ${ct.vmid} to mount ${s.path}` });
  await ct.sh.reboot(ct.vmid);
  await waitBooted(ct);
  if (!(await succeeds(ct, ['mountpoint', '-q', s.path])))
    throw new BackupSetupError(
      `CT ${ct.vmid}: ${s.path} is not a mount point after pct set -mp${s.mountPoint} ${s.hostDir},mp=${s.path} and a restart; check pct config ${ct.vmid}`,
    );
  return [...done, `CT ${ct.vmid} restarted to mount ${s.path}`];
}

async function ensureOsUser(ct: Ct, inv: Inventory): Promise<string[]> {
  const b = inv.backup;
  if (await succeeds(ct, ['id', '-u', b.osUser])) return [];
  await run(ct, [
    'useradd',
    '--system',
    '--user-group',
    '--home-dir',
    b.storage.path,
    '--shell',
    '/bin/bash',
    b.osUser,
  ]);
  return [`user ${b.osUser}`];
}

interface BarmanManifest {
  barman: { version: string; wheels: string[]; dependencies: string[] };
}

/**
 * Barman into its virtualenv from the offline wheels. Barman requires `psycopg2`, an sdist that
 * needs a compiler; psycopg2-binary provides the same module, so the dependencies are installed
 * first and Barman itself with --no-deps.
 */
async function ensureBarmanVenv(ct: Ct, inv: Inventory): Promise<string[]> {
  const { dir, venv } = inv.backup.install;
  const manifest = JSON.parse(await run(ct, ['cat', `${dir}/MANIFEST.json`])) as BarmanManifest;
  const want = manifest.barman.version;
  const have = await probe(ct, [barmanExecutable(inv), '--version'], 60_000);
  if (have.code === 0 && have.stdout.trim().split('\n')[0]?.trim() === want) return [];
  if (!(await succeeds(ct, ['test', '-x', `${venv}/bin/pip`])))
    await run(ct, ['python3', '-m', 'venv', venv], 300_000);
  const pip = [`${venv}/bin/pip`, 'install', '-q', '--no-index', '--find-links', dir];
  heartbeat({ vmid: ct.vmid, step: `pip install barman ${want}` });
  await run(ct, [...pip, ...manifest.barman.dependencies], 600_000);
  await run(ct, [...pip, '--no-deps', `barman==${want}`], 600_000);
  await run(ct, [barmanExecutable(inv), '--version']);
  return [`barman ${want}`];
}

/** Barman on the backup CT, configured, with `barman cron` running every minute and receive-wal as a service. */
export async function installBackup(deps: NodeDeps, args: { inv: Inventory }): Promise<NodeChange> {
  const { inv } = args;
  const node = requireBackupNode(inv);
  const ct: Ct = { sh: await deps.shellFor(inv.proxmox), vmid: node.vmid };
  const b = inv.backup;
  await markCluster(ct, inv);
  const installed = await ensureStorage(ct, inv);
  installed.push(...(await ensureOsUser(ct, inv)));
  await ensureDir(ct, b.storage.path, b.osUser, 0o750);
  await ensureDir(ct, BARMAN_LOG_DIR, b.osUser, 0o750);
  await ensureDir(ct, BARMAN_CONF_DIR, 'root', 0o755);
  if (inv.install.postgresql.method !== 'offline')
    throw new BackupSetupError(
      'install.postgresql.method must be offline for a backup CT (the client binaries come from the same build)',
    );
  installed.push(...(await ensurePostgresBuild(ct, inv, inv.install.postgresql.dir)));
  // Barman runs file(1) on WAL files (compression and encryption detection); `barman restore`
  // copies with rsync.
  installed.push(...(await ensureDebs(ct, b.install.dir, ['file', 'rsync'])));
  installed.push(...(await ensureBarmanVenv(ct, inv)));
  const rendered = renderBackupFiles(inv, await resolveClusterSecrets(inv));
  const files = await ensureFiles(ct, rendered);
  const services = await ensureService(ct, {
    unit: BARMAN_TIMER,
    files: [BARMAN_CRON_SERVICE_PATH, BARMAN_CRON_TIMER_PATH],
    filesChanged: files.some((f) => f === BARMAN_CRON_SERVICE_PATH || f === BARMAN_CRON_TIMER_PATH),
    running: true,
    onChange: 'restart',
  });
  services.push(
    ...(await ensureService(ct, {
      unit: BARMAN_RECEIVE_WAL,
      files: [BARMAN_RECEIVE_WAL_SERVICE_PATH],
      filesChanged: files.includes(BARMAN_RECEIVE_WAL_SERVICE_PATH),
      running: true,
      onChange: 'restart',
    })),
  );
  return { node: node.hostname, vmid: ct.vmid, installed, files, services };
}
