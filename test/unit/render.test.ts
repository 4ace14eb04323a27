/**
 * Renderers: golden files for the seed's cluster and the lab (UPDATE_GOLDEN=1 rewrites them), and
 * the seed's defects checked one by one on what is rendered.
 *
 *   npm test -- test/unit/render.test.ts
 *   UPDATE_GOLDEN=1 npm test -- test/unit/render.test.ts      # after an intended change; review the diff
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { appendFile, chown, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { loadInventory, parseInventory } from '../../runbooks/inventory';
import { Proc, freePort, toolPath, waitFor } from '../helpers/local-common';
import { quote } from '../../activities/command';
import type { ClusterSecrets, Inventory } from '../../runbooks/schema';
import {
  HAPROXY_ADMIN_SOCKET,
  HAPROXY_STATE_DOWN_PATH,
  HAPROXY_STATE_FILE,
  onlineInstallRecipes,
  renderHaproxyStateDown,
  renderHaproxyUnit,
  renderNodeFiles,
  renderCluster,
  renderInstallScript,
  renderEtcdConf,
  ETCD_CONF_PATH,
  renderHaproxyCfg,
  renderHaproxyHoldLua,
  HAPROXY_HOLD_LUA_PATH,
  renderPatroniYml,
  renderPgHba,
  renderPgpass,
  renderSeedHaproxy,
  supportsFailsafe,
  type RenderedFile,
} from '../../activities/render';

const root = join(__dirname, '..', '..');
const goldenDir = join(root, 'test', 'golden');
const update = process.env.UPDATE_GOLDEN === '1';

/** Fixed fake values: the goldens show where each secret lands, never a real one. */
const FAKE: ClusterSecrets = {
  superuserPassword: '<superuser-password>',
  replicationPassword: '<replication-password>',
  restApiPassword: '<restapi-password>',
  haproxyStatsPassword: '<haproxy-stats-password>',
};

const clusters = ['pve-seed', 'lab'] as const;

async function inventory(name: string): Promise<Inventory> {
  return loadInventory(join(root, 'runbooks', 'clusters', `${name}.yaml`));
}

/** Everything rendered for a cluster, as golden path → content. */
function goldenFiles(inv: Inventory): Map<string, string> {
  const out = new Map<string, string>();
  const manifest: string[] = [];
  const add = (key: string, f: RenderedFile) => {
    out.set(key, f.content);
    manifest.push(`${key}\t${f.path}\t${f.mode.toString(8).padStart(4, '0')}\t${f.owner}:${f.group}`);
  };
  for (const { node, files } of renderCluster(inv, FAKE))
    for (const f of files) add(`${node.hostname}${f.path}`, f);
  // A member joining a running cluster (pgha etcd replace): the same file with state `existing`.
  const joining = inv.nodes.etcd[inv.nodes.etcd.length - 1]!;
  add(
    `${joining.hostname}-join${ETCD_CONF_PATH}`,
    renderEtcdConf(inv, joining, { initialClusterState: 'existing' }),
  );
  add('seed-haproxy/etc/haproxy/haproxy.cfg', renderSeedHaproxy(inv));
  out.set('install-recipes.json', `${JSON.stringify(onlineInstallRecipes(inv), null, 2)}\n`);
  for (const r of onlineInstallRecipes(inv))
    out.set(`install/${r.component}-${r.method}.sh`, renderInstallScript(r, quote));
  out.set('MANIFEST.tsv', `# golden file\tpath in the CT\tmode\towner:group\n${manifest.join('\n')}\n`);
  return out;
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch {
    return out;
  }
  for (const e of entries) if (e.isFile()) out.push(relative(dir, join(e.parentPath, e.name)));
  return out.sort();
}

void describe('golden files (UPDATE_GOLDEN=1 rewrites them)', () => {
  for (const name of clusters) {
    void it(`${name}: every rendered file matches test/golden/${name}/`, async () => {
      const inv = await inventory(name);
      const want = goldenFiles(inv);
      const dir = join(goldenDir, name);
      if (update) {
        await rm(dir, { recursive: true, force: true });
        for (const [key, content] of want) {
          await mkdir(dirname(join(dir, key)), { recursive: true });
          await writeFile(join(dir, key), content);
        }
      }
      const have = await listFiles(dir);
      assert.deepEqual(
        have,
        [...want.keys()].sort(),
        `the set of golden files under ${dir} (run with UPDATE_GOLDEN=1)`,
      );
      for (const [key, content] of want) {
        const golden = await readFile(join(dir, key), 'utf8');
        assert.equal(
          content,
          golden,
          `${name}/${key} differs from its golden file (UPDATE_GOLDEN=1 to accept)`,
        );
      }
    });
  }
});

void describe("the seed's defects are fixed in what is rendered", () => {
  void it('HAProxy: writes check /primary, reads check /replica round-robin, fast checks, shutdown-sessions, redispatch', async () => {
    const inv = await inventory('pve-seed');
    const cfg = renderHaproxyCfg(inv, FAKE).content;
    const section = (name: string) => {
      const m = new RegExp(`^backend ${name}\\n((?:    .*\\n)+)`, 'm').exec(cfg);
      assert.ok(m, `backend ${name} present`);
      return m[1]!;
    };
    const write = section('postgres_primary');
    const read = section('postgres_replicas');
    assert.match(write, /option httpchk GET \/primary\n/);
    assert.match(read, /option httpchk GET \/replica\n/);
    assert.match(read, /balance roundrobin/);
    assert.doesNotMatch(cfg, /GET \/patroni/);
    for (const b of [write, read]) {
      assert.match(
        b,
        /default-server inter 1s fastinter 250ms downinter 500ms fall 2 rise 1 on-marked-down shutdown-sessions/,
      );
      assert.equal(b.match(/^ {4}server pg\d+ 192\.168\.50\.2\d:5432 check port 8008$/gm)?.length, 3);
    }
    assert.match(cfg, /frontend postgres_write\n {4}bind \*:5432\n/);
    assert.match(cfg, /frontend postgres_read\n {4}bind \*:5433\n/);
    assert.match(cfg, /^ {4}option redispatch$/m);
    assert.match(cfg, /^ {4}timeout check 2s$/m);
    assert.match(cfg, /^ {4}timeout connect 1s$/m);
    // HAProxy logs to its unit's stdout (journald): the CTs have no /dev/log
    assert.match(cfg, /^ {4}log stdout format short local0 info$/m);
    assert.doesNotMatch(cfg, /\/dev\/log/);
    assert.match(cfg, new RegExp(`^    stats socket ${HAPROXY_ADMIN_SOCKET} mode 600 level admin$`, 'm'));
    assert.match(cfg, /^ {4}stats auth 'admin:<haproxy-stats-password>'$/m);
    assert.doesNotMatch(cfg, /admin:admin|stats admin if TRUE/);
  });

  void it("renderSeedHaproxy reproduces the seed's own config (GET /patroni, inter 3s fall 3 rise 3, admin:admin)", async () => {
    const inv = await inventory('lab');
    const cfg = renderSeedHaproxy(inv).content;
    assert.match(cfg, /option httpchk GET \/patroni\n/);
    assert.equal(cfg.match(/check port 8008 inter 3s fall 3 rise 3$/gm)?.length, 3);
    assert.match(cfg, /server pg103 10\.213\.50\.22:5432 check port 8008/);
    assert.match(cfg, /stats auth admin:admin/);
    assert.match(cfg, /stats socket \/var\/lib\/haproxy\/admin\.sock mode 660 level admin/);
    assert.doesNotMatch(cfg, /\/primary|\/replica|5433/);
  });

  void it('HAProxy: every server starts DOWN from a state file, never "UP until the first check fails"', async () => {
    for (const name of clusters) {
      const inv = await inventory(name);
      const cfg = renderHaproxyCfg(inv, FAKE).content;
      const global = /^global\n((?: {4}.*\n)+)/m.exec(cfg)![1]!;
      const defaults = /^defaults\n((?: {4}.*\n)+)/m.exec(cfg)![1]!;
      assert.match(global, new RegExp(`^ {4}server-state-file ${HAPROXY_STATE_FILE}$`, 'm'));
      assert.match(defaults, /^ {4}load-server-state-from-file global$/m);

      // One line per server of the config, each STOPPED with its checks configured and enabled.
      const servers = [...cfg.matchAll(/^backend (\S+)\n((?: {4}.*\n)+)/gm)].flatMap(([, be, body]) =>
        [...body!.matchAll(/^ {4}server (\S+) ([\d.]+):(\d+) check port (\d+)$/gm)].map((m) => ({
          key: `${be} ${m[1]}`,
          addr: m[2],
          port: m[3],
          checkPort: m[4],
        })),
      );
      assert.equal(servers.length, 2 * inv.nodes.postgres.length);
      const down = renderHaproxyStateDown(inv);
      assert.equal(down.path, HAPROXY_STATE_DOWN_PATH);
      const lines = down.content.split('\n');
      assert.equal(lines[0], '1', 'the first line is the format version alone');
      const rows = lines.slice(1).filter((l) => l !== '' && !l.startsWith('#'));
      assert.deepEqual(
        rows.map((l) =>
          l
            .split(' ')
            .slice(1, 4)
            .filter((_, i) => i !== 1)
            .join(' '),
        ),
        servers.map((s) => s.key),
      );
      for (const [i, row] of rows.entries()) {
        const f = row.split(' ');
        assert.equal(f.length, 25, row);
        assert.equal(f[4], servers[i]!.addr);
        assert.equal(f[5], '0', `${servers[i]!.key}: srv_op_state STOPPED`);
        assert.equal(f[6], '0', `${servers[i]!.key}: no admin state (not maint, not drain)`);
        assert.equal(f[12], '0', `${servers[i]!.key}: check health 0`);
        assert.equal(f[13], '6', `${servers[i]!.key}: checks configured and enabled`);
        assert.equal(f[18], servers[i]!.port);
        assert.equal(f[21], servers[i]!.checkPort);
      }
      assert.ok(
        renderNodeFiles(inv, 'haproxy', inv.nodes.haproxy[0]!, FAKE).some(
          (f) => f.path === HAPROXY_STATE_DOWN_PATH && f.content === down.content,
        ),
        'the deploy step pushes the all-DOWN state file',
      );
    }
  });

  void it('HAProxy unit: the state file is written before every start and before every reload signal', async () => {
    const unit = renderHaproxyUnit(await inventory('lab')).content;
    const exec = unit.split('\n').filter((l) => /^Exec(StartPre|Start|Reload)=/.test(l));
    const at = (re: RegExp) => exec.findIndex((l) => re.test(l));
    const startCopy = at(
      new RegExp(`^ExecStartPre=/bin/cp ${HAPROXY_STATE_DOWN_PATH} ${HAPROXY_STATE_FILE}$`),
    );
    assert.ok(startCopy >= 0 && startCopy < at(/^ExecStart=/), 'all DOWN before every start');
    const dump = at(/^ExecReload=\/bin\/sh -c '.*show servers state/);
    assert.ok(
      dump >= 0 && dump < at(/^ExecReload=\/bin\/kill -USR2/),
      'states dumped before the reload signal',
    );
    const script = /^ExecReload=\/bin\/sh -c '(.*)'$/.exec(exec[dump]!)![1]!;
    // ends by moving a complete file into place (never a half-written state file); falls back to all DOWN
    assert.match(script, new RegExp(`; mv -f ${HAPROXY_STATE_FILE}\\.new ${HAPROXY_STATE_FILE}$`));
    assert.match(script, new RegExp(`\\|\\| cp ${HAPROXY_STATE_DOWN_PATH} `));
    assert.doesNotMatch(script, /[$%']/, 'nothing systemd would expand or that ends the quoting');
    const r = await execFileP('sh', ['-n', '-c', script]);
    assert.equal(r.stderr, '');
  });

  void it('PostgreSQL: scram-sha-256 everywhere, pg_hba limited to the subnet and local, never 0.0.0.0/0 or md5', async () => {
    const inv = await inventory('pve-seed');
    const hba = renderPgHba(inv);
    assert.ok(hba.length > 0);
    for (const line of hba) {
      assert.match(line, /(scram-sha-256|peer)$/, line);
      assert.doesNotMatch(line, /0\.0\.0\.0\/0|md5|trust/, line);
      if (line.startsWith('host'))
        assert.match(line, / (127\.0\.0\.1\/32|::1\/128|192\.168\.50\.0\/24) /, line);
    }
    assert.ok(hba.includes('host replication replicator 192.168.50.0/24 scram-sha-256'));
    assert.ok(hba.includes('host all all 192.168.50.0/24 scram-sha-256'));
    const yml = parseYaml(renderPatroniYml(inv, inv.nodes.postgres[1]!, FAKE).content) as PatroniYml;
    assert.equal(yml.bootstrap.dcs.postgresql.parameters.password_encryption, 'scram-sha-256');
    assert.deepEqual(yml.postgresql.pg_hba, hba);
    assert.equal(yml.bootstrap.pg_hba, undefined, 'no md5 bootstrap pg_hba left over');
  });

  void it('Patroni: the seed values, the node own address, the etcd members, REST auth and passwords from the secrets argument', async () => {
    const inv = await inventory('pve-seed');
    const f = renderPatroniYml(inv, inv.nodes.postgres[1]!, FAKE);
    assert.equal(f.path, '/etc/patroni/patroni.yml');
    assert.equal(f.mode, 0o600);
    assert.equal(f.owner, 'postgres');
    const y = parseYaml(f.content) as PatroniYml;
    assert.equal(y.scope, 'postgres');
    assert.equal(y.namespace, '/patroni/');
    assert.equal(y.name, 'pg103');
    assert.equal(y.restapi.listen, '192.168.50.22:8008');
    assert.equal(y.restapi.connect_address, '192.168.50.22:8008');
    assert.deepEqual(y.restapi.authentication, { username: 'patroni', password: '<restapi-password>' });
    assert.deepEqual(y.etcd3.hosts, ['192.168.50.51:2379', '192.168.50.52:2379', '192.168.50.53:2379']);
    assert.deepEqual(
      [
        y.bootstrap.dcs.ttl,
        y.bootstrap.dcs.loop_wait,
        y.bootstrap.dcs.retry_timeout,
        y.bootstrap.dcs.maximum_lag_on_failover,
      ],
      [60, 10, 20, 1048576],
    );
    assert.equal(y.bootstrap.dcs.postgresql.use_pg_rewind, true);
    assert.equal(y.bootstrap.dcs.postgresql.use_slots, true);
    const params = y.bootstrap.dcs.postgresql.parameters;
    assert.equal(params.hot_standby, 'on', 'YAML 1.1 readers (PyYAML) must see the string "on"');
    assert.equal(params.wal_keep_size, '512MB');
    assert.equal(
      params.archive_command,
      'mkdir -p /var/lib/pgsql/18/archive && cp %p /var/lib/pgsql/18/archive/%f',
    );
    assert.deepEqual(y.bootstrap.initdb, [{ encoding: 'UTF8' }, 'data-checksums']);
    assert.equal(y.bootstrap.users, undefined);
    assert.equal(y.postgresql.data_dir, '/var/lib/pgsql/18/data');
    assert.equal(y.postgresql.bin_dir, '/usr/pgsql-18/bin');
    assert.equal(y.postgresql.connect_address, '192.168.50.22:5432');
    assert.equal(y.postgresql.parameters.unix_socket_directories, '/var/run/postgresql');
    assert.deepEqual(y.postgresql.authentication, {
      replication: { username: 'replicator', password: '<replication-password>' },
      superuser: { username: 'postgres', password: '<superuser-password>' },
    });
    assert.doesNotMatch(f.content, /Qwe1234|Replicator123/);
    // The values come from the secrets argument, not the inventory (which holds env: references).
    const other = renderPatroniYml(inv, inv.nodes.postgres[1]!, {
      ...FAKE,
      superuserPassword: 'pw: with # and "quotes"',
    });
    assert.equal(
      (parseYaml(other.content) as PatroniYml).postgresql.authentication.superuser?.password,
      'pw: with # and "quotes"',
    );
    assert.doesNotMatch(f.content, /env:PGHA_SEED/);
  });

  void it('DCS failsafe mode is rendered for Patroni >= 3.0.0 and only there', async () => {
    const inv = await inventory('lab');
    const dcsOf = (patroni: string) => {
      const v = { ...inv, versions: { ...inv.versions, patroni } };
      const y = parseYaml(renderPatroniYml(v, v.nodes.postgres[0]!, FAKE).content) as PatroniYml;
      return y.bootstrap.dcs;
    };
    // The lab's (and the seed's) 3.3.0, the first release with it, and Patroni 4.
    for (const v of ['3.3.0', '3.0.0', '3.0', '4.0.7', '10.0.0'])
      assert.equal(dcsOf(v).failsafe_mode, true, v);
    // Before 3.0.0 Patroni has no failsafe mode: no key (it would be ignored, and promise nothing).
    for (const v of ['2.1.7', '2.1', '1.6.5']) assert.equal('failsafe_mode' in dcsOf(v), false, v);
    assert.equal(supportsFailsafe('3.0.0'), true);
    assert.equal(supportsFailsafe('2.99.99'), false);
    assert.equal(supportsFailsafe('not a version'), false);
  });

  void it('the lab Patroni config uses the lab bin_dir/data_dir and a Patroni in a virtualenv', async () => {
    const inv = await inventory('lab');
    const y = parseYaml(renderPatroniYml(inv, inv.nodes.postgres[0]!, FAKE).content) as PatroniYml;
    assert.equal(y.restapi.listen, '10.213.50.21:8008');
    assert.equal(y.postgresql.bin_dir, inv.postgresql.binDir);
    assert.equal(y.postgresql.data_dir, inv.postgresql.dataDir);
    assert.deepEqual(y.etcd3.hosts, ['10.213.50.51:2379', '10.213.50.52:2379', '10.213.50.53:2379']);
    const unit = renderCluster(inv, FAKE)
      .find((n) => n.node.hostname === 'pg102')!
      .files.find((f) => f.path.endsWith('patroni.service'))!;
    assert.match(unit.content, /^ExecStart=\/opt\/patroni\/bin\/patroni \/etc\/patroni\/patroni\.yml$/m);
  });

  void it('etcd.conf: the seed variables, no trailing comments (systemd EnvironmentFile= has none)', async () => {
    const inv = await inventory('pve-seed');
    const c = renderEtcdConf(inv, inv.nodes.etcd[0]!).content;
    const vars = Object.fromEntries(
      c
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    assert.deepEqual(vars, {
      ETCD_NAME: 'etcd1',
      ETCD_DATA_DIR: '/var/lib/etcd',
      ETCD_LISTEN_CLIENT_URLS: 'http://192.168.50.51:2379,http://127.0.0.1:2379',
      ETCD_ADVERTISE_CLIENT_URLS: 'http://192.168.50.51:2379',
      ETCD_LISTEN_PEER_URLS: 'http://192.168.50.51:2380',
      ETCD_INITIAL_ADVERTISE_PEER_URLS: 'http://192.168.50.51:2380',
      ETCD_INITIAL_CLUSTER:
        'etcd1=http://192.168.50.51:2380,etcd2=http://192.168.50.52:2380,etcd3=http://192.168.50.53:2380',
      ETCD_INITIAL_CLUSTER_TOKEN: 'patroni-cluster-token',
      ETCD_INITIAL_CLUSTER_STATE: 'new',
      ETCD_LOGGER: 'zap',
    });
    for (const v of Object.values(vars)) assert.doesNotMatch(v, /[#\s]/);
    assert.throws(
      () => renderEtcdConf(inv, inv.nodes.postgres[0]!),
      /pg102 \(CT 102\) is not an etcd member/,
    );
  });

  void it('files holding a secret are 0600 and every secret lands only in them', async () => {
    for (const name of clusters) {
      const inv = await inventory(name);
      for (const { files } of renderCluster(inv, FAKE))
        for (const f of files) {
          const holds = Object.values(FAKE).some((s) => f.content.includes(s));
          assert.equal(
            f.mode === 0o600,
            holds,
            `${name} ${f.path}: mode ${f.mode.toString(8)}, holds a secret: ${holds}`,
          );
        }
      const pgpass = renderPgpass(inv, FAKE);
      assert.equal(pgpass.path, '/var/lib/pgsql/.pgpass');
      assert.match(pgpass.content, /^\*:5432:\*:postgres:<superuser-password>$/m);
    }
  });

  void it(".pgpass escapes ':' and '\\' in passwords", async () => {
    const inv = await inventory('lab');
    const c = renderPgpass(inv, { ...FAKE, superuserPassword: 'a:b\\c' }).content;
    assert.match(c, /^\*:5432:\*:postgres:a\\:b\\\\c$/m);
  });

  void it("the seed's online recipes: PGDG 18.1, pip patroni[etcd3]==3.3.0, the verified etcd 3.5.13 tarball", async () => {
    const recipes = onlineInstallRecipes(await inventory('pve-seed'));
    assert.deepEqual(
      recipes.map((r) => `${r.component}:${r.method}`),
      ['postgresql:pgdg', 'patroni:pip', 'etcd:tarball', 'haproxy:package'],
    );
    const argvs = recipes.flatMap((r) => r.steps.map((s) => s.argv.join(' ')));
    assert.ok(argvs.includes('dnf install -y postgresql18-server-18.1 postgresql18-contrib-18.1'));
    assert.ok(argvs.includes('pip3 install patroni[etcd3]==3.3.0 psycopg2-binary'));
    assert.ok(
      argvs.some((a) =>
        a.endsWith(
          'https://github.com/etcd-io/etcd/releases/download/v3.5.13/etcd-v3.5.13-linux-amd64.tar.gz',
        ),
      ),
    );
    assert.ok(argvs.some((a) => a.includes('sha256sum --check')));
    assert.ok(
      argvs.includes(
        'install -m 0755 /tmp/pgha-etcd-v3.5.13-linux-amd64/etcd-v3.5.13-linux-amd64/etcdctl /usr/local/bin/etcdctl',
      ),
    );
    assert.deepEqual(onlineInstallRecipes(await inventory('lab')), [], 'the lab installs offline');
  });

  void it('the install scripts: argv through activities/command.ts, valid sh, useradd tolerating an existing user', async () => {
    const recipes = onlineInstallRecipes(await inventory('pve-seed'));
    const dir = await mkdtemp(join(tmpdir(), 'pgha-render-sh-'));
    try {
      for (const r of recipes) {
        const script = renderInstallScript(r, quote);
        for (const step of r.steps) assert.ok(script.includes(`${quote(step.argv)}`), step.why);
        await writeFile(join(dir, `${r.component}.sh`), script);
        for (const shell of ['sh', 'bash']) await execFileP(shell, ['-n', join(dir, `${r.component}.sh`)]);
      }
      const etcd = renderInstallScript(
        recipes.find((r) => r.component === 'etcd')!,
        quote,
      );
      assert.match(etcd, /^useradd --system .* etcd \|\| case \$\? in 9\) ;; \*\) exit 1 ;; esac$/m);
      assert.match(
        etcd,
        /^sh -c 'cd "\$1" && sha256sum --check --ignore-missing SHA256SUMS' verify \/tmp\/pgha-etcd-v3\.5\.13-linux-amd64$/m,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

interface PatroniYml {
  scope: string;
  namespace: string;
  name: string;
  restapi: {
    listen: string;
    connect_address: string;
    authentication: { username: string; password: string };
  };
  etcd3: { hosts: string[] };
  bootstrap: {
    dcs: {
      ttl: number;
      loop_wait: number;
      retry_timeout: number;
      maximum_lag_on_failover: number;
      failsafe_mode?: boolean;
      postgresql: { use_pg_rewind: boolean; use_slots: boolean; parameters: Record<string, unknown> };
    };
    initdb: unknown[];
    pg_hba?: unknown;
    users?: unknown;
  };
  postgresql: {
    data_dir: string;
    bin_dir: string;
    connect_address: string;
    parameters: Record<string, unknown>;
    pg_hba: string[];
    authentication: Record<string, { username: string; password: string }>;
  };
}

// ---------------------------------------------------------------------------------------------
// The rendered files, read by the real programs (installed by scripts/test-services), on loopback
// ---------------------------------------------------------------------------------------------

const execFileP = promisify(execFile);

function which(bin: string): string {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin'])
    if (existsSync(join(dir, bin))) return join(dir, bin);
  throw new Error(`${bin} is not installed: run scripts/test-services`);
}

/** The lab inventory moved onto loopback (127.0.0.x keeps the seed's last octets). */
async function loopbackInventory(
  ports: Partial<Inventory['ports']> = {},
  edit: (doc: { postgresql: Record<string, unknown> }) => void = () => {},
): Promise<Inventory> {
  const text = (await readFile(join(root, 'runbooks', 'clusters', 'lab.yaml'), 'utf8')).replaceAll(
    '10.213.50.',
    '127.0.0.',
  );
  const doc = parseYaml(text) as { ports: Record<string, number>; postgresql: Record<string, unknown> };
  Object.assign(doc.ports, ports);
  edit(doc);
  return parseInventory(doc, { baseDir: root });
}

/** KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments on their own lines only). */
function envFile(content: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of content.split('\n')) {
    if (line.trim() === '' || /^\s*[#;]/.test(line)) continue;
    const i = line.indexOf('=');
    assert.ok(i > 0, `not KEY=VALUE: ${line}`);
    env[line.slice(0, i)] = line.slice(i + 1);
  }
  return env;
}

/**
 * The etcd members of `inv` from their rendered etcd.conf alone (no flags), on one host: each
 * member gets its own data directory, and the loopback listener (127.0.0.1 inside each CT) is left
 * out, as the members would share it here. Resolves when every member reports healthy.
 */
async function startRenderedEtcd(inv: Inventory, dir: string, procs: Proc[]): Promise<string[]> {
  const etcd = toolPath('etcd-server', 'usr', 'bin', 'etcd');
  for (const node of inv.nodes.etcd) {
    const env = envFile(renderEtcdConf(inv, node).content);
    env.ETCD_DATA_DIR = join(dir, node.hostname);
    const loopback = `,http://127.0.0.1:${inv.ports.etcdClient}`;
    assert.ok(env.ETCD_LISTEN_CLIENT_URLS!.endsWith(loopback));
    env.ETCD_LISTEN_CLIENT_URLS = env.ETCD_LISTEN_CLIENT_URLS!.slice(0, -loopback.length);
    procs.push(new Proc(node.hostname, etcd, [], { env: { PATH: process.env.PATH, ...env } }));
  }
  const urls = inv.nodes.etcd.map((n) => `http://${n.ip}:${inv.ports.etcdClient}`);
  for (const [i, url] of urls.entries())
    await waitFor(`etcd member ${url} healthy`, 30_000, async () => {
      if (!procs[i]!.running) throw new Error(`exited: ${procs[i]!.output()}`);
      const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      return r.ok && ((await r.json()) as { health: string }).health === 'true';
    });
  return urls;
}

void describe('the rendered files, read by the real programs', () => {
  void it('haproxy -c accepts the rendered haproxy.cfg (pve-seed and lab) and the seed own one', async () => {
    const haproxy = which('haproxy');
    const dir = await mkdtemp(join(tmpdir(), 'pgha-render-haproxy-'));
    try {
      for (const name of clusters) {
        const inv = await inventory(name);
        for (const [label, f] of [
          ['pgha', renderHaproxyCfg(inv, { ...FAKE, haproxyStatsPassword: `it's "quoted" $HOME #1` })],
          ['seed', renderSeedHaproxy(inv)],
        ] as const) {
          const file = join(dir, `${name}-${label}.cfg`);
          // the Lua file it loads, rendered beside it (haproxy -c loads it)
          const lua = join(dir, `${name}-hold.lua`);
          await writeFile(lua, renderHaproxyHoldLua(inv).content);
          await writeFile(file, f.content.replace(HAPROXY_HOLD_LUA_PATH, lua));
          // -c parses and checks the whole file without binding, connecting or chrooting.
          const r = await execFileP(haproxy, ['-c', '-f', file], { timeout: 30_000 }).catch(
            (e: { stdout: string; stderr: string }) =>
              assert.fail(`${name} ${label}: haproxy -c failed:\n${e.stdout}${e.stderr}`),
          );
          assert.match(`${r.stdout}${r.stderr}`, /Configuration file is valid/);
          assert.doesNotMatch(`${r.stdout}${r.stderr}`, /ALERT/);
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('etcd 3.4 forms a 3-member cluster from the rendered etcd.conf alone, and serves the v3 JSON gateway Patroni uses', async () => {
    const inv = await loopbackInventory({ etcdClient: await freePort(), etcdPeer: await freePort() });
    const dir = await mkdtemp(join(tmpdir(), 'pgha-render-etcd-'));
    const procs: Proc[] = [];
    try {
      const urls = await startRenderedEtcd(inv, dir, procs);
      const b64 = (s: string) => Buffer.from(s).toString('base64');
      const key = `${inv.patroni.namespace}${inv.patroni.scope}/probe`;
      const put = await fetch(`${urls[0]}/v3/kv/put`, {
        method: 'POST',
        body: JSON.stringify({ key: b64(key), value: b64('ok') }),
        signal: AbortSignal.timeout(3000),
      });
      assert.equal(put.status, 200);
      const range = await fetch(`${urls[2]}/v3/kv/range`, {
        method: 'POST',
        body: JSON.stringify({ key: b64(key) }),
        signal: AbortSignal.timeout(3000),
      });
      const body = (await range.json()) as { kvs?: { value: string }[] };
      assert.equal(Buffer.from(body.kvs?.[0]?.value ?? '', 'base64').toString(), 'ok');
      const members = await fetch(`${urls[1]}/v3/cluster/member/list`, {
        method: 'POST',
        body: '{}',
        signal: AbortSignal.timeout(3000),
      });
      const names = ((await members.json()) as { members: { name: string }[] }).members
        .map((m) => m.name)
        .sort();
      assert.deepEqual(names, ['etcd1', 'etcd2', 'etcd3']);
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('PostgreSQL 18 accepts the rendered parameters and pg_hba, and SCRAM is what a login uses', async () => {
    const bin = (t: string) => toolPath('postgresql', 'bin', t);
    const inv = await loopbackInventory();
    const y = parseYaml(renderPatroniYml(inv, inv.nodes.postgres[0]!, FAKE).content) as PatroniYml;
    const uid = Number((await execFileP('id', ['-u', 'pgha-test'])).stdout.trim());
    const gid = Number((await execFileP('id', ['-g', 'pgha-test'])).stdout.trim());
    const dir = await mkdtemp(join(tmpdir(), 'pgha-render-pg-'));
    await chown(dir, uid, gid);
    const data = join(dir, 'data');
    const password = FAKE.superuserPassword;
    let proc: Proc | undefined;
    try {
      await writeFile(join(dir, 'pw'), `${password}\n`, { mode: 0o600 });
      await chown(join(dir, 'pw'), uid, gid);
      // initdb with the options Patroni derives from bootstrap.initdb: --encoding=UTF8 --data-checksums
      const initdbOpts = y.bootstrap.initdb.map((o) =>
        typeof o === 'string'
          ? `--${o}`
          : Object.entries(o as Record<string, string>).map(([k, v]) => `--${k}=${v}`)[0]!,
      );
      assert.deepEqual(initdbOpts, ['--encoding=UTF8', '--data-checksums']);
      await execFileP(
        bin('initdb'),
        ['-D', data, '-U', 'postgres', '--pwfile', join(dir, 'pw'), '--no-sync', ...initdbOpts],
        {
          uid,
          gid,
          env: { ...process.env, LC_ALL: 'C.UTF-8' },
          timeout: 120_000,
        },
      );
      // What Patroni writes: pg_hba.conf from postgresql.pg_hba, the parameters into postgresql.conf.
      await writeFile(join(data, 'pg_hba.conf'), `${y.postgresql.pg_hba.join('\n')}\n`);
      const conf = (v: unknown) => (typeof v === 'number' ? String(v) : `'${String(v).replace(/'/g, "''")}'`);
      const params = { ...y.bootstrap.dcs.postgresql.parameters, ...y.postgresql.parameters };
      await appendFile(
        join(data, 'postgresql.conf'),
        Object.entries(params)
          .map(([k, v]) => `${k} = ${conf(v)}\n`)
          .join(''),
      );
      const port = await freePort();
      proc = new Proc(
        'pg',
        bin('postgres'),
        // Only what differs on a test host: where to listen, and no archiving into /var/lib/pgsql.
        [
          '-D',
          data,
          '-p',
          String(port),
          '-c',
          'listen_addresses=127.0.0.1',
          '-c',
          `unix_socket_directories=${dir}`,
          '-c',
          'archive_mode=off',
        ],
        { uid, gid, env: { ...process.env, LC_ALL: 'C.UTF-8' } },
      );
      const psql = (sql: string, pw = password) =>
        execFileP(
          bin('psql'),
          ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-XAtc', sql],
          {
            env: { ...process.env, PGPASSWORD: pw, PGCONNECT_TIMEOUT: '3' },
            timeout: 10_000,
          },
        ).then((r) => r.stdout.trim());
      await waitFor('postgres on loopback', 60_000, async () => {
        if (!proc!.running) throw new Error(`postgres exited: ${proc!.output()}`);
        return psql('select 1').then((o) => o === '1');
      });
      assert.equal(await psql('select count(*) from pg_hba_file_rules where error is not null'), '0');
      assert.equal(
        await psql(
          "select coalesce(string_agg(name || '=' || coalesce(setting, '') || ': ' || error, '; '), '') from pg_file_settings where error is not null and name not in ('archive_mode', 'unix_socket_directories')",
        ),
        '',
      );
      assert.equal(
        await psql(
          `select string_agg(distinct auth_method, ',') from pg_hba_file_rules where type = 'host' and auth_method <> 'reject'`,
        ),
        'scram-sha-256',
      );
      // The only refusals: Barman's roles from anywhere but the backup CT's path (issue 10).
      assert.equal(
        await psql(
          `select coalesce(string_agg(distinct array_to_string(user_name, ','), ';'), '') from pg_hba_file_rules where auth_method = 'reject'`,
        ),
        'barman,streaming_barman',
      );
      assert.equal(await psql('show password_encryption'), 'scram-sha-256');
      assert.equal(await psql('show data_checksums'), 'on');
      assert.equal(await psql('show server_encoding'), 'UTF8');
      assert.equal(await psql('show wal_keep_size'), '512MB');
      assert.equal(await psql('show log_directory'), 'log');
      // The pg_hba rules in force: no 0.0.0.0/0, the lab subnet only (Barman's own /32 lines aside:
      // test/unit/barman-render.test.ts).
      assert.equal(
        await psql(
          `select string_agg(distinct address || '/' || netmask, ' ' order by address || '/' || netmask) from pg_hba_file_rules where address is not null and not user_name && array['barman', 'streaming_barman']`,
        ),
        '127.0.0.0/255.255.255.0 127.0.0.1/255.255.255.255 ::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      );
      await assert.rejects(psql('select 1', 'wrong'), /password authentication failed for user "postgres"/);
    } finally {
      if (proc?.running) {
        proc.child.kill('SIGINT');
        const t = setTimeout(() => proc!.child.kill('SIGKILL'), 10_000);
        await proc.exited;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('Patroni 3.3.0 runs the rendered patroni.yml: a leader bootstraps, a replica clones over SCRAM, REST auth guards unsafe endpoints', async (t) => {
    const wheels = patroniWheelDir('3.3.0');
    if (!wheels) {
      t.skip(
        'no Patroni 3.3.0 wheels on this machine (lab/bootstrap builds them into /var/cache/pgha/offline-*)',
      );
      return;
    }
    const patroniBin = await patroniVenv('3.3.0', wheels);
    const uid = Number((await execFileP('id', ['-u', 'pgha-test'])).stdout.trim());
    const gid = Number((await execFileP('id', ['-g', 'pgha-test'])).stdout.trim());
    const dir = await mkdtemp(join(tmpdir(), 'pgha-render-patroni-'));
    await chown(dir, uid, gid);
    const pgBin = realpathSync(toolPath('postgresql', 'bin')); // .tools/postgresql-18.x.y/bin
    // The lab inventory on loopback, with what must differ on a shared test host: free ports, the
    // PostgreSQL build of .tools, directories the unprivileged test user owns.
    const inv = await loopbackInventory(
      {
        etcdClient: await freePort(),
        etcdPeer: await freePort(),
        postgresql: await freePort(),
        patroniRestApi: await freePort(),
      },
      (doc) => {
        doc.postgresql.binDir = pgBin;
        doc.postgresql.dataDir = join(dir, 'data-18');
        doc.postgresql.home = dir;
        doc.postgresql.osUser = 'pgha-test';
        (doc.postgresql.parameters as Record<string, unknown>).archive_command =
          `mkdir -p ${dir}/archive && cp %p ${dir}/archive/%f`;
      },
    );
    const secrets: ClusterSecrets = {
      superuserPassword: 'su-Pw:1#"x',
      replicationPassword: "repl pw 'q'",
      restApiPassword: 'rest-pw',
      haproxyStatsPassword: 'unused',
    };
    const procs: Proc[] = [];
    const patronis: Proc[] = [];
    try {
      await startRenderedEtcd(inv, dir, procs);
      const members = inv.nodes.postgres.slice(0, 2);
      for (const [i, node] of members.entries()) {
        const y = parseYaml(renderPatroniYml(inv, node, secrets).content) as PatroniYml &
          Record<string, unknown>;
        // One host stands in for two CTs: own data directory, pgpass and socket directory, and no
        // shared 127.0.0.1 listener for the second member.
        const own = join(dir, node.hostname);
        await mkdir(own, { mode: 0o700 });
        await chown(own, uid, gid);
        Object.assign(y.postgresql, {
          data_dir: join(own, 'data'),
          pgpass: join(own, 'pgpass'),
          ...(i > 0 ? { listen: `${node.ip}:${inv.ports.postgresql}` } : {}),
        });
        y.postgresql.parameters.unix_socket_directories = own;
        const file = join(own, 'patroni.yml');
        await writeFile(file, toYaml(y), { mode: 0o600 });
        await chown(file, uid, gid);
        if (i === 0) {
          const v = await execFileP(patroniBin, ['--validate-config', file], { timeout: 30_000 }).catch(
            (e: { stdout: string; stderr: string }) =>
              assert.fail(`patroni --validate-config: ${e.stdout}${e.stderr}`),
          );
          assert.equal(`${v.stdout}${v.stderr}`.trim(), '');
        }
        patronis.push(
          new Proc(node.hostname, patroniBin, [file], {
            uid,
            gid,
            cwd: own,
            env: { PATH: `${pgBin}:/usr/bin:/bin`, LC_ALL: 'C.UTF-8' },
          }),
        );
        const api = `http://${node.ip}:${inv.ports.patroniRestApi}`;
        const role = i === 0 ? 'primary' : 'replica';
        const proc = patronis[i]!;
        await Promise.race([
          waitFor(`${node.hostname} answering 200 on /${role}`, 90_000, async () => {
            const r = await fetch(`${api}/${role}`, { signal: AbortSignal.timeout(1000) });
            await r.arrayBuffer();
            return r.status === 200;
          }),
          proc.exited.then((code) =>
            assert.fail(`patroni ${node.hostname} exited (${code}): ${proc.output()}`),
          ),
        ]);
      }
      const [leader, replica] = members.map((n) => `http://${n.ip}:${inv.ports.patroniRestApi}`);
      // The seed's defect, on real Patroni: GET /patroni is 200 on the replica too; /primary is not.
      assert.equal((await fetch(`${replica}/patroni`)).status, 200);
      assert.equal((await fetch(`${replica}/primary`)).status, 503);
      // The leader sees the replica streaming as the replication user (pg_hba subnet line, SCRAM).
      let seen = '';
      await waitFor('the replica streaming from the leader', 30_000, async () => {
        const st = (await (await fetch(`${leader}/patroni`)).json()) as {
          replication?: { usename: string; state: string }[];
        };
        seen = (st.replication ?? []).map((r) => `${r.usename} ${r.state}`).join(',');
        return seen === 'replicator streaming';
      });
      assert.equal(seen, 'replicator streaming');
      // Unsafe endpoints need the REST API credentials.
      assert.equal((await fetch(`${leader}/reload`, { method: 'POST' })).status, 401);
      const auth = `Basic ${Buffer.from(`patroni:${secrets.restApiPassword}`).toString('base64')}`;
      const reload = await fetch(`${leader}/reload`, { method: 'POST', headers: { authorization: auth } });
      assert.ok(
        [200, 202].includes(reload.status),
        `reload with auth: ${reload.status} ${await reload.text()}`,
      );
      // The superuser logs in over TCP with its SCRAM password; data checksums are on.
      const psql = (sql: string) =>
        execFileP(
          `${pgBin}/psql`,
          [
            '-h',
            members[0]!.ip,
            '-p',
            String(inv.ports.postgresql),
            '-U',
            'postgres',
            '-d',
            'postgres',
            '-XAtc',
            sql,
          ],
          {
            env: { ...process.env, PGPASSWORD: secrets.superuserPassword, PGCONNECT_TIMEOUT: '3' },
            timeout: 10_000,
          },
        ).then((r) => r.stdout.trim());
      assert.equal(await psql('show data_checksums'), 'on');
      assert.equal(
        await psql(
          "select string_agg(rolname || ':' || left(rolpassword, 14), ',' order by rolname) from pg_authid where rolname in ('postgres', 'replicator')",
        ),
        'postgres:SCRAM-SHA-256$,replicator:SCRAM-SHA-256$',
      );
      assert.equal(await psql('select count(*) from pg_hba_file_rules where error is not null'), '0');
    } finally {
      // Patroni stops its PostgreSQL on SIGTERM; bounded, then etcd.
      await Promise.all(patronis.reverse().map((p) => p.stop(30_000)));
      await Promise.all(procs.map((p) => p.stop()));
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** A directory holding the Patroni wheels the lab's offline package directory was built with. */
function patroniWheelDir(version: string): string | undefined {
  const cache = process.env.PGHA_CACHE ?? '/var/cache/pgha';
  let entries: string[] = [];
  try {
    entries = readdirSync(cache)
      .filter((e) => e.startsWith('offline-'))
      .sort();
  } catch {
    return undefined;
  }
  for (const e of entries) {
    const d = join(cache, e, `patroni-${version}`);
    if (existsSync(join(d, `patroni-${version}-py3-none-any.whl`))) return d;
  }
  return undefined;
}

/** .tools/patroni-<version>/bin/patroni, installed once from local wheels only (no index). */
async function patroniVenv(version: string, wheels: string): Promise<string> {
  const venv = join(root, '.tools', `patroni-${version}`);
  const bin = join(venv, 'bin', 'patroni');
  // A venv runs only from where it was made (its scripts name their interpreter by absolute path):
  // one copied or left by a removed checkout is rebuilt.
  const runs =
    existsSync(bin) &&
    (await execFileP(bin, ['--version'], { timeout: 30_000 }).then(
      () => true,
      () => false,
    ));
  if (runs) return bin;
  // --clear: a venv left half-made by an interrupted run is rebuilt.
  // Debian's python3 (3.11, as in the CTs): readable by the unprivileged user Patroni runs as.
  await execFileP('/usr/bin/python3', ['-m', 'venv', '--clear', venv], { timeout: 120_000 });
  const pip = join(venv, 'bin', 'pip');
  await execFileP(
    pip,
    ['install', '-q', '--no-index', '--find-links', wheels, `patroni[etcd3]==${version}`, 'psycopg2-binary'],
    {
      timeout: 300_000,
    },
  );
  return bin;
}
