/**
 * The cluster's containers, provisioned through the Proxmox host's `pct` (activities/proxmox.ts):
 * what the seed's Ansible roles do — packages, users, files, services — as idempotent activities.
 * Each looks first and acts only where the container differs from the inventory, and reports what it
 * changed; run twice, the second run changes nothing and restarts nothing.
 *
 * Every command is an argv array; activities/command.ts is the only place one becomes shell text.
 */
import { posix } from 'node:path';
import type { ProxmoxHost } from './proxmox';
import type { Inventory, Node, Role } from '../runbooks/schema';
import { resolveClusterSecrets } from '../runbooks/inventory';
import { onlineInstallRecipes, renderNodeFiles } from './render';
import type { RenderedFile } from './render';
import { heartbeat } from './poll';

/** The part of ProxmoxHost these activities use (a fake in unit tests, the lab's sshd + pct for real). */
export type CtShell = Pick<ProxmoxHost, 'exec' | 'push' | 'status'>;

export interface NodeDeps {
  shellFor(proxmox: Inventory['proxmox']): Promise<CtShell>;
}

/** What a provisioning activity did on one node: empty lists mean "already as wanted". */
export interface NodeChange {
  node: string;
  vmid: number;
  installed: string[];
  files: string[];
  services: string[];
}

export class NodeCommandError extends Error {
  override readonly name = 'NodeCommandError';
  constructor(vmid: number, argv: string[], code: number, stderr: string) {
    const tail = stderr.trim().split('\n').slice(-8).join('\n');
    super(`CT ${vmid}: \`${argv.slice(0, 6).join(' ')}\` exited with ${code}${tail ? `:\n${tail}` : ''}`);
  }
}

/** The file that tells which cluster a node belongs to (pre-flight refuses a node of another cluster). */
export const CLUSTER_MARKER = '/etc/pgha/cluster';

const SERVICE: Record<Role, string> = { etcd: 'etcd', postgres: 'patroni', haproxy: 'haproxy' };

export function findNode(inv: Inventory, role: Role, hostname: string): Node {
  const n = inv.nodes[role].find((x) => x.hostname === hostname);
  if (!n) {
    const known = inv.nodes[role].map((x) => x.hostname).join(', ');
    throw new Error(
      `${hostname} is not a ${role} node of cluster ${inv.cluster} (its ${role} nodes: ${known})`,
    );
  }
  return n;
}

/**
 * Heartbeats every few seconds while a command runs, so a short heartbeat timeout notices a dead
 * worker quickly without cutting off a long apt or pip install.
 */
async function whileBeating<T>(work: Promise<T>, details: unknown): Promise<T> {
  heartbeat(details);
  const timer = setInterval(() => heartbeat(details), 5000);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

export function createNodeActivities(deps: NodeDeps) {
  // --- primitives (argv in, checked results out) ------------------------------------------

  async function run(sh: CtShell, vmid: number, argv: string[], timeoutMs = 120_000): Promise<string> {
    const r = await whileBeating(sh.exec(vmid, argv, { timeoutMs }), { vmid, command: argv[0] });
    if (r.code !== 0) throw new NodeCommandError(vmid, argv, r.code, r.stderr);
    return r.stdout;
  }

  async function succeeds(sh: CtShell, vmid: number, argv: string[]): Promise<boolean> {
    return (await sh.exec(vmid, argv, { timeoutMs: 60_000 })).code === 0;
  }

  async function installedPackages(sh: CtShell, vmid: number, names: string[]): Promise<Set<string>> {
    const r = await sh.exec(vmid, ['dpkg-query', '-W', '-f=${Package} ${Status}\\n', ...names], {
      timeoutMs: 30_000,
    });
    const have = new Set<string>();
    for (const line of r.stdout.split('\n')) {
      const [pkg, ...status] = line.split(' ');
      if (pkg && status.join(' ') === 'install ok installed') have.add(pkg);
    }
    return have;
  }

  /**
   * Debian packages from the offline directory's flat apt repository (`<dir>/debs`, with its
   * Packages index), the way an air-gapped site installs: apt resolves the dependencies from that
   * directory and what the CT has. No service starts on install (policy-rc.d): the runbook starts
   * each service on its own nodes, configured.
   */
  async function ensureDebs(sh: CtShell, vmid: number, dir: string, names: string[]): Promise<string[]> {
    const have = await installedPackages(sh, vmid, names);
    const missing = names.filter((n) => !have.has(n));
    if (missing.length === 0) return [];
    const sourceList = '/etc/apt/pgha-offline.list';
    const apt = [
      'apt-get',
      '-q',
      '-o',
      `Dir::Etc::SourceList=${sourceList}`,
      '-o',
      'Dir::Etc::SourceParts=-',
    ];
    const policy = '/usr/sbin/policy-rc.d';
    await sh.push(vmid, sourceList, `deb [trusted=yes] file:${dir}/debs ./\n`, { mode: 0o644 });
    await sh.push(vmid, policy, '#!/bin/sh\n# pgha: no service starts on package install\nexit 101\n', {
      mode: 0o755,
    });
    try {
      await run(sh, vmid, [...apt, 'update'], 300_000);
      await run(
        sh,
        vmid,
        [
          'env',
          'DEBIAN_FRONTEND=noninteractive',
          ...apt,
          'install',
          '-y',
          '--no-install-recommends',
          ...missing,
        ],
        600_000,
      );
    } finally {
      await sh.exec(vmid, ['rm', '-f', policy], { timeoutMs: 30_000 });
    }
    return missing;
  }

  async function ensureFiles(sh: CtShell, vmid: number, files: RenderedFile[]): Promise<string[]> {
    const changed: string[] = [];
    for (const f of files) {
      await run(sh, vmid, ['mkdir', '-p', posix.dirname(f.path)]);
      const r = await sh.push(vmid, f.path, f.content, { mode: f.mode, owner: f.owner, group: f.group });
      if (r.changed) changed.push(f.path);
    }
    return changed;
  }

  async function ensureDir(
    sh: CtShell,
    vmid: number,
    path: string,
    owner: string,
    mode: number,
  ): Promise<boolean> {
    const r = await sh.exec(vmid, ['stat', '-c', '%a %U', path], { timeoutMs: 30_000 });
    if (r.code === 0 && r.stdout.trim() === `${mode.toString(8)} ${owner}`) return false;
    await run(sh, vmid, ['install', '-d', '-m', mode.toString(8), '-o', owner, '-g', owner, path]);
    return true;
  }

  async function unitState(sh: CtShell, vmid: number, unit: string) {
    const out = await run(sh, vmid, [
      'systemctl',
      'show',
      unit,
      '--property=ActiveState,UnitFileState,ExecMainStartTimestampMonotonic',
    ]);
    const p = Object.fromEntries(
      out
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    return {
      active: p.ActiveState === 'active' || p.ActiveState === 'activating' || p.ActiveState === 'reloading',
      enabled: p.UnitFileState === 'enabled',
      startedAt: Number(p.ExecMainStartTimestampMonotonic ?? 0),
    };
  }

  /**
   * A unit enabled and (optionally) running. `changed` says its configuration was just rewritten:
   * a running unit then gets `onChange` (reload or restart); one not running is simply started.
   * `noBlock` queues the start (etcd's Type=notify unit is not ready until the cluster has quorum).
   */
  async function ensureUnit(
    sh: CtShell,
    vmid: number,
    unit: string,
    want: {
      running: boolean;
      changed: boolean;
      unitFileChanged: boolean;
      onChange: 'reload' | 'restart';
      noBlock?: boolean;
    },
  ): Promise<string[]> {
    const did: string[] = [];
    if (want.unitFileChanged) await run(sh, vmid, ['systemctl', 'daemon-reload']);
    const s = await unitState(sh, vmid, unit);
    if (!s.enabled) {
      await run(sh, vmid, ['systemctl', 'enable', '--quiet', unit]);
      did.push(`${unit} enabled`);
    }
    if (!want.running) return did;
    const block = want.noBlock ? ['--no-block'] : [];
    if (!s.active) {
      await run(sh, vmid, ['systemctl', 'start', ...block, unit], 180_000);
      did.push(`${unit} started`);
    } else if (want.changed) {
      await run(sh, vmid, ['systemctl', want.onChange, ...block, unit], 180_000);
      did.push(`${unit} ${want.onChange}ed`);
    }
    return did;
  }

  /** The seed's online recipes (PGDG, pip, etcd tarball, distribution haproxy), step by step. */
  async function runOnlineRecipe(
    sh: CtShell,
    vmid: number,
    inv: Inventory,
    component: string,
  ): Promise<string[]> {
    const recipe = onlineInstallRecipes(inv).find((r) => r.component === component);
    if (!recipe) return [];
    for (const step of recipe.steps) {
      heartbeat({ vmid, step: step.why });
      const r = await whileBeating(sh.exec(vmid, step.argv, { timeoutMs: 900_000 }), {
        vmid,
        step: step.why,
      });
      if (!(step.okExitCodes ?? [0]).includes(r.code))
        throw new NodeCommandError(vmid, step.argv, r.code, r.stderr);
    }
    return [`${component} (${recipe.method})`];
  }

  async function context(inv: Inventory, role: Role, hostname: string) {
    const node = findNode(inv, role, hostname);
    const sh = await deps.shellFor(inv.proxmox);
    return { node, sh, vmid: node.vmid };
  }

  async function markCluster(sh: CtShell, vmid: number, inv: Inventory): Promise<void> {
    await run(sh, vmid, ['mkdir', '-p', posix.dirname(CLUSTER_MARKER)]);
    await sh.push(vmid, CLUSTER_MARKER, `${inv.cluster}\n`, { mode: 0o644 });
  }

  async function renderFor(inv: Inventory, role: Role, node: Node): Promise<RenderedFile[]> {
    return renderNodeFiles(inv, role, node, await resolveClusterSecrets(inv));
  }

  // --- activities ---------------------------------------------------------------------------

  /**
   * Pre-flight on one node: its CT exists and runs, and it holds no data of another cluster
   * (etcd's member dir or a PostgreSQL data dir without our marker, or a marker naming another
   * cluster). A node already marked for this cluster is a resume, not a conflict.
   */
  async function preflightNode(args: { inv: Inventory; role: Role; hostname: string }) {
    const { inv, role, hostname } = args;
    const { sh, vmid } = await context(inv, role, hostname);
    const state = await sh.status(vmid);
    if (state !== 'running') {
      throw new Error(`CT ${vmid} (${hostname}) is ${state}; start it first: pct start ${vmid}`);
    }
    const marker = await sh.exec(vmid, ['cat', CLUSTER_MARKER], { timeoutMs: 30_000 });
    const owner = marker.code === 0 ? marker.stdout.trim() : undefined;
    if (owner !== undefined && owner !== inv.cluster) {
      throw new Error(
        `CT ${vmid} (${hostname}) belongs to cluster "${owner}" (${CLUSTER_MARKER}), not "${inv.cluster}": ` +
          "check the inventory's vmid, or remove that cluster first",
      );
    }
    const dataPath =
      role === 'etcd'
        ? `${inv.etcd.dataDir}/member`
        : role === 'postgres'
          ? `${inv.postgresql.dataDir}/PG_VERSION`
          : undefined;
    const hasData = dataPath ? await succeeds(sh, vmid, ['test', '-e', dataPath]) : false;
    if (hasData && owner === undefined) {
      throw new Error(
        `CT ${vmid} (${hostname}) already holds data at ${dataPath} that pgha did not create: ` +
          'refusing to deploy over it. Move it away (or point the inventory at another CT) and run again',
      );
    }
    return { node: hostname, vmid, resuming: owner === inv.cluster, hasData };
  }

  /** etcd on one node: packages, /etc/etcd/etcd.conf, the unit; started without waiting for quorum. */
  async function installEtcd(args: { inv: Inventory; hostname: string }): Promise<NodeChange> {
    const { inv, hostname } = args;
    const { node, sh, vmid } = await context(inv, 'etcd', hostname);
    await markCluster(sh, vmid, inv);
    const installed =
      inv.install.etcd.method === 'offline'
        ? await ensureDebs(sh, vmid, inv.install.etcd.dir, ['etcd-server', 'etcd-client'])
        : await runOnlineRecipe(sh, vmid, inv, 'etcd');
    await ensureDir(sh, vmid, inv.etcd.dataDir, inv.etcd.user, 0o700);
    const files = await ensureFiles(sh, vmid, await renderFor(inv, 'etcd', node));
    const services = await ensureUnit(sh, vmid, SERVICE.etcd, {
      running: true,
      changed: files.length > 0,
      unitFileChanged: files.some((f) => f.endsWith('.service')),
      onChange: 'restart',
      noBlock: true,
    });
    return { node: hostname, vmid, installed, files, services };
  }

  /**
   * PostgreSQL binaries + Patroni on one node, configured but not started (bootstrap and join are
   * their own steps). A running Patroni whose patroni.yml changed is reloaded (SIGHUP), not restarted.
   */
  async function installPostgres(args: { inv: Inventory; hostname: string }): Promise<NodeChange> {
    const { inv, hostname } = args;
    const { node, sh, vmid } = await context(inv, 'postgres', hostname);
    const pg = inv.postgresql;
    await markCluster(sh, vmid, inv);
    const installed: string[] = [];

    if (!(await succeeds(sh, vmid, ['id', '-u', pg.osUser]))) {
      await run(sh, vmid, [
        'useradd',
        '--system',
        '--user-group',
        '--home-dir',
        pg.home,
        '--shell',
        '/bin/bash',
        pg.osUser,
      ]);
      installed.push(`user ${pg.osUser}`);
    }
    await ensureDir(sh, vmid, pg.home, pg.osUser, 0o700);
    await ensureDir(sh, vmid, posix.dirname(pg.dataDir), pg.osUser, 0o700);

    if (inv.install.postgresql.method === 'offline') {
      installed.push(...(await ensurePostgresBuild(sh, vmid, inv, inv.install.postgresql.dir)));
    } else {
      installed.push(...(await runOnlineRecipe(sh, vmid, inv, 'postgresql')));
    }
    if (inv.install.patroni.method === 'offline') {
      installed.push(
        ...(await ensurePatroniVenv(sh, vmid, inv, inv.install.patroni.dir, inv.install.patroni.venv)),
      );
    } else {
      installed.push(...(await runOnlineRecipe(sh, vmid, inv, 'patroni')));
    }
    await ensureDir(sh, vmid, inv.patroni.configDir, pg.osUser, 0o750);
    const files = await ensureFiles(sh, vmid, await renderFor(inv, 'postgres', node));
    const unitFileChanged = files.some((f) => f.endsWith('.service'));
    if (unitFileChanged) await run(sh, vmid, ['systemctl', 'daemon-reload']);
    const s = await unitState(sh, vmid, SERVICE.postgres);
    const services: string[] = [];
    if (!s.enabled) {
      await run(sh, vmid, ['systemctl', 'enable', '--quiet', SERVICE.postgres]);
      services.push('patroni enabled');
    }
    if (s.active && files.length > 0) {
      await run(sh, vmid, ['systemctl', 'reload', SERVICE.postgres]);
      services.push('patroni reloaded');
    }
    return { node: hostname, vmid, installed, files, services };
  }

  /**
   * The PostgreSQL build from the offline directory, unpacked to /usr/pgsql-<version> and linked as
   * the inventory's bin_dir parent (/usr/pgsql-18), so a minor upgrade is a new directory and a link.
   */
  async function ensurePostgresBuild(
    sh: CtShell,
    vmid: number,
    inv: Inventory,
    dir: string,
  ): Promise<string[]> {
    const manifest = JSON.parse(await run(sh, vmid, ['cat', `${dir}/MANIFEST.json`])) as {
      postgresql: { version: string; wheel: string; archive: string }[];
    };
    const want = inv.versions.postgresql;
    const build = manifest.postgresql.find((b) => b.version === want || b.version.startsWith(`${want}.`));
    if (!build) {
      const have = manifest.postgresql.map((b) => b.version).join(', ');
      throw new Error(
        `versions.postgresql ${want}: no such build in ${dir} (it has ${have}); set versions.postgresql to one of them`,
      );
    }
    const home = posix.dirname(inv.postgresql.binDir); // /usr/pgsql-18
    // /usr/pgsql-18 -> /usr/pgsql-18.4.0
    const target = /-\d+$/.test(home) ? home.replace(/\d+$/, build.version) : `${home}-${build.version}`;
    const done: string[] = [];
    const version = await sh.exec(vmid, [`${target}/bin/postgres`, '--version'], { timeoutMs: 30_000 });
    if (version.code !== 0) {
      const tmp = `${target}.partial`;
      await run(sh, vmid, ['rm', '-rf', tmp, `${tmp}.wheel`]);
      await run(sh, vmid, ['mkdir', '-p', tmp]);
      await run(
        sh,
        vmid,
        ['python3', '-m', 'zipfile', '-e', `${dir}/${build.wheel}`, `${tmp}.wheel`],
        300_000,
      );
      await run(
        sh,
        vmid,
        [
          'tar',
          '-xzf',
          `${tmp}.wheel/${build.archive}`,
          '-C',
          tmp,
          '--strip-components=1',
          '--no-same-owner',
        ],
        300_000,
      );
      await run(sh, vmid, ['rm', '-rf', `${tmp}.wheel`]);
      await run(sh, vmid, [`${tmp}/bin/postgres`, '--version']);
      await run(sh, vmid, ['mv', '-T', tmp, target]);
      done.push(`postgresql ${build.version}`);
    }
    const link = await sh.exec(vmid, ['readlink', home], { timeoutMs: 30_000 });
    if (link.stdout.trim() !== target) {
      await run(sh, vmid, ['ln', '-sfnT', target, home]);
      done.push(`${home} -> ${target}`);
    }
    // The build's shared libraries (libpq for the WAL receiver, loaded by dlopen) through the link,
    // so a minor upgrade that moves the link needs no other change.
    const ld = await sh.push(vmid, '/etc/ld.so.conf.d/pgha-postgresql.conf', `${home}/lib\n`, {
      mode: 0o644,
    });
    if (ld.changed || done.length > 0) await run(sh, vmid, ['ldconfig']);
    return done;
  }

  /** Patroni (with the etcd3 extra and psycopg2) into a virtualenv, from the offline wheels. */
  async function ensurePatroniVenv(
    sh: CtShell,
    vmid: number,
    inv: Inventory,
    dir: string,
    venv: string,
  ): Promise<string[]> {
    const want = inv.versions.patroni;
    const have = await sh.exec(vmid, [`${venv}/bin/patroni`, '--version'], { timeoutMs: 60_000 });
    if (have.code === 0 && have.stdout.trim().endsWith(` ${want}`)) return [];
    const manifest = JSON.parse(await run(sh, vmid, ['cat', `${dir}/MANIFEST.json`])) as {
      patroni: { version: string; findLinks: string; requirements: string[] }[];
    };
    const p = manifest.patroni.find((x) => x.version === want);
    if (!p) {
      const list = manifest.patroni.map((x) => x.version).join(', ');
      throw new Error(
        `versions.patroni ${want}: no wheels for it in ${dir} (it has ${list}); set versions.patroni to one of them`,
      );
    }
    if (!(await succeeds(sh, vmid, ['test', '-x', `${venv}/bin/pip`]))) {
      await run(sh, vmid, ['python3', '-m', 'venv', venv], 300_000);
    }
    heartbeat({ vmid, step: `pip install patroni ${want}` });
    await run(
      sh,
      vmid,
      [
        `${venv}/bin/pip`,
        'install',
        '-q',
        '--no-index',
        '--find-links',
        `${dir}/${p.findLinks}`,
        ...p.requirements,
      ],
      600_000,
    );
    return [`patroni ${want}`];
  }

  /** Starts Patroni on a node (idempotent: a running one is left alone). */
  async function startPatroni(args: { inv: Inventory; hostname: string }): Promise<NodeChange> {
    const { inv, hostname } = args;
    const { sh, vmid } = await context(inv, 'postgres', hostname);
    const services = await ensureUnit(sh, vmid, SERVICE.postgres, {
      running: true,
      changed: false,
      unitFileChanged: false,
      onChange: 'reload',
    });
    return { node: hostname, vmid, installed: [], files: [], services };
  }

  /** HAProxy on one node: package, haproxy.cfg (validated by the unit's ExecStartPre), started or reloaded. */
  async function installHaproxy(args: { inv: Inventory; hostname: string }): Promise<NodeChange> {
    const { inv, hostname } = args;
    const { node, sh, vmid } = await context(inv, 'haproxy', hostname);
    await markCluster(sh, vmid, inv);
    const installed =
      inv.install.haproxy.method === 'offline'
        ? await ensureDebs(sh, vmid, inv.install.haproxy.dir, ['haproxy'])
        : await runOnlineRecipe(sh, vmid, inv, 'haproxy');
    const files = await ensureFiles(sh, vmid, await renderFor(inv, 'haproxy', node));
    if (files.length > 0) await run(sh, vmid, ['haproxy', '-c', '-q', '-f', '/etc/haproxy/haproxy.cfg']);
    const services = await ensureUnit(sh, vmid, SERVICE.haproxy, {
      running: true,
      changed: files.length > 0,
      unitFileChanged: files.some((f) => f.endsWith('.service')),
      onChange: 'reload',
    });
    return { node: hostname, vmid, installed, files, services };
  }

  /** When each service of the node last started (systemd's monotonic clock): proof that nothing restarted. */
  async function serviceStartTimes(args: { inv: Inventory; role: Role; hostname: string }) {
    const { inv, role, hostname } = args;
    const { sh, vmid } = await context(inv, role, hostname);
    const s = await unitState(sh, vmid, SERVICE[role]);
    return { node: hostname, service: SERVICE[role], active: s.active, startedAt: s.startedAt };
  }

  return { preflightNode, installEtcd, installPostgres, startPatroni, installHaproxy, serviceStartTimes };
}

export type NodeActivities = ReturnType<typeof createNodeActivities>;
