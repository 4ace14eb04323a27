/**
 * The seed's online install recipes (its Ansible roles: PGDG packages, pip, the etcd release
 * tarball, the distribution's haproxy) as argv steps. Rendered and golden-tested only; the lab
 * installs from its offline directory instead (deployCluster's install activity). Each step is an
 * argv array — activities/command.ts is the one place an argv becomes shell text.
 */
import type { Inventory } from '../../runbooks/schema';

export interface InstallStep {
  /** What the step does, in the seed's words. */
  why: string;
  argv: string[];
  /** Exit codes that mean success (default [0]); e.g. useradd's 9 = the user exists already. */
  okExitCodes?: number[];
}

export interface InstallRecipe {
  component: 'postgresql' | 'patroni' | 'etcd' | 'haproxy';
  method: string;
  /** Where it runs: the role of the CTs. */
  role: 'postgres' | 'etcd' | 'haproxy';
  steps: InstallStep[];
}

/** PostgreSQL from the PGDG repository (dnf), the seed's way. */
function pgdgRecipe(inv: Inventory, repoRpm: string): InstallRecipe {
  const major = inv.postgresql.major;
  const pg = inv.postgresql;
  const v = inv.versions.postgresql;
  return {
    component: 'postgresql',
    method: 'pgdg',
    role: 'postgres',
    steps: [
      { why: 'add the PGDG repository', argv: ['dnf', 'install', '-y', repoRpm] },
      {
        why: "disable the distribution's postgresql module",
        argv: ['dnf', '-qy', 'module', 'disable', 'postgresql'],
      },
      {
        why: `install PostgreSQL ${v}`,
        argv: ['dnf', 'install', '-y', `postgresql${major}-server-${v}`, `postgresql${major}-contrib-${v}`],
      },
      {
        why: 'Patroni runs PostgreSQL: disable the packaged service',
        argv: ['systemctl', 'disable', '--now', `postgresql-${major}`],
      },
      {
        why: 'the unix socket directory',
        argv: ['install', '-d', '-m', '2775', '-o', pg.osUser, '-g', pg.osUser, '/var/run/postgresql'],
      },
    ],
  };
}

/** Patroni with pip (into a virtualenv when the inventory names one). */
function pipRecipe(inv: Inventory, venv: string | undefined): InstallRecipe {
  const pg = inv.postgresql;
  const spec = `patroni[etcd3]==${inv.versions.patroni}`;
  return {
    component: 'patroni',
    method: 'pip',
    role: 'postgres',
    steps: [
      { why: "Patroni's Python", argv: ['dnf', 'install', '-y', 'python3', 'python3-pip'] },
      ...(venv
        ? [
            { why: 'a virtualenv for Patroni', argv: ['python3', '-m', 'venv', venv] },
            {
              why: `install Patroni ${inv.versions.patroni}`,
              argv: [`${venv}/bin/pip`, 'install', spec, 'psycopg2-binary'],
            },
          ]
        : [
            {
              why: `install Patroni ${inv.versions.patroni}`,
              argv: ['pip3', 'install', spec, 'psycopg2-binary'],
            },
          ]),
      {
        why: 'the Patroni configuration directory',
        argv: ['install', '-d', '-m', '0750', '-o', pg.osUser, '-g', pg.osUser, inv.patroni.configDir],
      },
    ],
  };
}

/** etcd from the release tarball, checked against its SHA256SUMS. */
function tarballRecipe(inv: Inventory, baseUrl: string): InstallRecipe {
  const v = inv.versions.etcd;
  const name = `etcd-v${v}-linux-amd64`;
  const work = `/tmp/pgha-${name}`;
  const base = `${baseUrl.replace(/\/$/, '')}/v${v}`;
  const bins = ['etcd', 'etcdctl', ...(/^3\.[0-4]\./.test(v) ? [] : ['etcdutl'])];
  return {
    component: 'etcd',
    method: 'tarball',
    role: 'etcd',
    steps: [
      {
        why: 'the etcd user',
        argv: [
          'useradd',
          '--system',
          '--home-dir',
          inv.etcd.dataDir,
          '--shell',
          '/sbin/nologin',
          inv.etcd.user,
        ],
        okExitCodes: [0, 9],
      },
      { why: 'a work directory', argv: ['mkdir', '-p', work] },
      {
        why: `download etcd ${v}`,
        argv: ['curl', '-fsSL', '-o', `${work}/${name}.tar.gz`, `${base}/${name}.tar.gz`],
      },
      {
        why: 'download its checksums',
        argv: ['curl', '-fsSL', '-o', `${work}/SHA256SUMS`, `${base}/SHA256SUMS`],
      },
      {
        why: 'verify the download',
        argv: ['sh', '-c', 'cd "$1" && sha256sum --check --ignore-missing SHA256SUMS', 'verify', work],
      },
      { why: 'unpack', argv: ['tar', '-xzf', `${work}/${name}.tar.gz`, '-C', work] },
      ...bins.map((b) => ({
        why: `install ${b}`,
        argv: ['install', '-m', '0755', `${work}/${name}/${b}`, `${inv.etcd.binDir}/${b}`],
      })),
      {
        why: 'the data directory',
        argv: ['install', '-d', '-m', '0700', '-o', inv.etcd.user, '-g', inv.etcd.user, inv.etcd.dataDir],
      },
      { why: 'the configuration directory', argv: ['install', '-d', '-m', '0755', '/etc/etcd'] },
      { why: 'clean up', argv: ['rm', '-rf', work] },
    ],
  };
}

/** The online recipes of an inventory (components installed offline have none here). */
export function onlineInstallRecipes(inv: Inventory): InstallRecipe[] {
  const i = inv.install;
  const out: InstallRecipe[] = [];
  if (i.postgresql.method === 'pgdg') out.push(pgdgRecipe(inv, i.postgresql.repoRpm));
  if (i.patroni.method === 'pip') out.push(pipRecipe(inv, i.patroni.venv));
  if (i.etcd.method === 'tarball') out.push(tarballRecipe(inv, i.etcd.baseUrl));
  if (i.haproxy.method === 'package') {
    out.push({
      component: 'haproxy',
      method: 'package',
      role: 'haproxy',
      steps: [{ why: 'install HAProxy', argv: ['dnf', 'install', '-y', 'haproxy'] }],
    });
  }
  return out;
}

/**
 * A recipe as a shell script, given the project's one argv→shell quoting function
 * (activities/command.ts), so that this module stays free of quoting of its own.
 */
export function renderInstallScript(recipe: InstallRecipe, quoteArgv: (argv: string[]) => string): string {
  const lines = [
    '#!/bin/sh',
    `# Install ${recipe.component} (${recipe.method}) on the ${recipe.role} CTs: the seed's recipe, rendered by pgha.`,
    'set -eu',
  ];
  for (const s of recipe.steps) {
    lines.push('', `# ${s.why}`);
    const cmd = quoteArgv(s.argv);
    const ok = s.okExitCodes ?? [0];
    if (ok.length === 1 && ok[0] === 0) lines.push(cmd);
    else lines.push(`${cmd} || case $? in ${ok.filter((c) => c !== 0).join('|')}) ;; *) exit 1 ;; esac`);
  }
  return `${lines.join('\n')}\n`;
}
