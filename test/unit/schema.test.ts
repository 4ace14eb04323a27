/**
 * Inventory schema and loader: the two shipped inventories are valid and complete; each mistake an
 * operator can make is reported with its field path and a fix; `pgha validate` and
 * `pgha secrets init` as an operator runs them (real processes, temporary files, no network).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import {
  checkInventoryText,
  loadInventory,
  resolveClusterSecrets,
  validateInventory,
  didYouMean,
  InventoryError,
  type InventoryIssue,
} from '../../runbooks/inventory';

const root = join(__dirname, '..', '..');
const labFile = join(root, 'runbooks', 'clusters', 'lab.yaml');
const seedFile = join(root, 'runbooks', 'clusters', 'pve-seed.yaml');
const run = promisify(execFile);

/** A YAML document broken on purpose, field by field: untyped by design. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;

/** The lab inventory as a plain object, to be broken one field at a time. */
async function labDoc(): Promise<Doc> {
  return parseYaml(await readFile(labFile, 'utf8')) as Doc;
}

function errorsOf(doc: unknown, baseDir = '/etc/pgha'): InventoryIssue[] {
  return validateInventory(doc, { baseDir }).issues.filter((i) => i.severity === 'error');
}

/** Exactly one error is expected at `path`, and its fix must match `fix`. */
function expectError(doc: unknown, path: string, fix: RegExp, found?: RegExp): InventoryIssue {
  const errors = errorsOf(doc);
  const at = errors.filter((e) => e.path === path);
  assert.equal(at.length, 1, `one error at ${path}; got: ${JSON.stringify(errors, null, 1)}`);
  assert.match(at[0]!.fix, fix);
  if (found) assert.match(at[0]!.found, found);
  assert.ok(at[0]!.expected.length > 0);
  assert.equal(
    validateInventory(doc, { baseDir: '/etc/pgha' }).inventory,
    undefined,
    'no inventory for a broken doc',
  );
  return at[0]!;
}

void describe('the shipped inventories', () => {
  void it('lab.yaml: valid, the seed CT ids and last octets on 10.213.50.0/24, offline install, lab secrets', async () => {
    const inv = await loadInventory(labFile);
    assert.equal(inv.cluster, 'lab');
    assert.deepEqual(
      [...inv.nodes.haproxy, ...inv.nodes.postgres, ...inv.nodes.etcd].map(
        (n) => `${n.vmid} ${n.hostname} ${n.ip}`,
      ),
      [
        '100 haproxy1 10.213.50.11',
        '101 haproxy2 10.213.50.12',
        '102 pg102 10.213.50.21',
        '103 pg103 10.213.50.22',
        '104 pg104 10.213.50.23',
        '109 etcd1 10.213.50.51',
        '110 etcd2 10.213.50.52',
        '111 etcd3 10.213.50.53',
      ],
    );
    assert.deepEqual(inv.proxmox, {
      host: '10.213.50.1',
      port: 2222,
      user: 'root',
      privateKey: 'file:/var/lib/pgha-lab/ssh/id_ed25519',
      hostKeyFingerprint: 'file:/var/lib/pgha-lab/ssh/host_key.sha256',
    });
    assert.deepEqual(inv.versions, { postgresql: '18.4', patroni: '3.3.0', etcd: '3.4' });
    for (const c of ['postgresql', 'patroni', 'etcd', 'haproxy'] as const) {
      assert.equal(inv.install[c].method, 'offline');
      assert.equal((inv.install[c] as { dir: string }).dir, '/opt/pgha-offline');
    }
    assert.equal(inv.patroni.executable, '/opt/patroni/bin/patroni');
    assert.equal(inv.etcd.binDir, '/usr/bin');
    for (const ref of Object.values(inv.secrets))
      assert.match(ref, /^file:\/var\/lib\/pgha-lab\/secrets\/[a-z-]+$/);
    // One warning only: Patroni 3.3.0 (the seed's) does not support PostgreSQL 18 — the fix is named.
    const issues = validateInventory(await labDoc(), {}).issues;
    assert.deepEqual(
      issues.map((i) => `${i.severity} ${i.path}`),
      ['warning versions.patroni'],
    );
    assert.match(issues[0]!.fix, /pgha upgrade patroni/);
  });

  void it('pve-seed.yaml: the seed exactly (ports, versions, timings, paths, parameters, online install)', async () => {
    const inv = await loadInventory(seedFile);
    assert.deepEqual(
      inv.nodes.postgres.map((n) => `${n.vmid}:${n.ip}`),
      ['102:192.168.50.21', '103:192.168.50.22', '104:192.168.50.23'],
    );
    assert.deepEqual(
      inv.nodes.etcd.map((n) => `${n.vmid}:${n.hostname}:${n.ip}`),
      ['109:etcd1:192.168.50.51', '110:etcd2:192.168.50.52', '111:etcd3:192.168.50.53'],
    );
    assert.deepEqual(
      inv.nodes.haproxy.map((n) => `${n.vmid}:${n.ip}`),
      ['100:192.168.50.11', '101:192.168.50.12'],
    );
    assert.deepEqual(inv.versions, { postgresql: '18.1', patroni: '3.3.0', etcd: '3.5.13' });
    assert.deepEqual(
      [
        inv.ports.etcdClient,
        inv.ports.etcdPeer,
        inv.ports.postgresql,
        inv.ports.patroniRestApi,
        inv.ports.haproxyWrite,
        inv.ports.haproxyStats,
      ],
      [2379, 2380, 5432, 8008, 5432, 8404],
    );
    const p = inv.patroni;
    assert.deepEqual(
      [p.scope, p.namespace, p.ttl, p.loopWait, p.retryTimeout, p.maximumLagOnFailover],
      ['postgres', '/patroni/', 60, 10, 20, 1048576],
    );
    assert.equal(inv.postgresql.major, 18);
    assert.equal(inv.postgresql.dataDir, '/var/lib/pgsql/18/data');
    assert.equal(inv.postgresql.binDir, '/usr/pgsql-18/bin');
    assert.deepEqual(inv.postgresql.parameters, {
      wal_level: 'replica',
      hot_standby: 'on',
      hot_standby_feedback: 'on',
      wal_keep_size: '512MB',
      max_wal_senders: 3,
      max_replication_slots: 10,
      wal_log_hints: 'on',
      archive_mode: 'on',
      archive_command: 'mkdir -p /var/lib/pgsql/18/archive && cp %p /var/lib/pgsql/18/archive/%f',
      archive_timeout: '300s',
    });
    assert.deepEqual(
      Object.values(inv.install).map((i) => i.method),
      ['pgdg', 'pip', 'tarball', 'package'],
    );
    assert.equal(inv.etcd.binDir, '/usr/local/bin');
    assert.equal(inv.patroni.executable, '/usr/local/bin/patroni');
    assert.equal(inv.etcd.clusterToken, 'patroni-cluster-token');
    // The seed's max_wal_senders 3 is kept, with a warning (not an error); so is its Patroni 3.3.0,
    // which does not support PostgreSQL 18.
    const r = validateInventory(parseYaml(await readFile(seedFile, 'utf8')), {});
    assert.deepEqual(
      r.issues.map((i) => `${i.severity} ${i.path}`),
      ['warning versions.patroni', 'warning postgresql.parameters.max_wal_senders'],
    );
  });

  void it("defaults: a minimal inventory gets the seed's ports, timings, paths and users", async () => {
    const doc = await labDoc();
    for (const k of ['ports', 'patroni', 'postgresql', 'etcd', 'haproxy']) delete doc[k];
    doc.install.patroni = { method: 'pip' };
    const r = validateInventory(doc, { baseDir: '/x' });
    assert.ok(r.inventory, JSON.stringify(r.issues));
    const inv = r.inventory;
    assert.deepEqual(inv.ports, {
      etcdClient: 2379,
      etcdPeer: 2380,
      postgresql: 5432,
      patroniRestApi: 8008,
      haproxyWrite: 5432,
      haproxyRead: 5433,
      haproxyStats: 8404,
    });
    assert.deepEqual(
      [
        inv.patroni.scope,
        inv.patroni.namespace,
        inv.patroni.ttl,
        inv.patroni.loopWait,
        inv.patroni.retryTimeout,
      ],
      ['postgres', '/patroni/', 60, 10, 20],
    );
    assert.equal(inv.postgresql.binDir, '/usr/pgsql-18/bin');
    assert.equal(inv.postgresql.dataDir, '/var/lib/pgsql/18/data');
    assert.deepEqual(inv.postgresql.allowedNetworks, ['10.213.50.0/24']);
    assert.equal(inv.postgresql.replicationUser, 'replicator');
    assert.equal(inv.haproxy.statsUser, 'admin');
    assert.equal(inv.patroni.executable, '/usr/local/bin/patroni');
  });

  void it('relative file: references resolve against the inventory file directory', async () => {
    const doc = await labDoc();
    doc.secrets.superuserPassword = 'file:secrets/su';
    doc.secrets.replicationPassword = 'file:../shared/repl';
    doc.proxmox.privateKey = 'file:./ssh/key';
    const r = checkInventoryText(toYaml(doc), '/srv/pgha/clusters/prod.yaml');
    assert.ok(r.inventory, JSON.stringify(r.issues));
    assert.equal(r.inventory.secrets.superuserPassword, 'file:/srv/pgha/clusters/secrets/su');
    assert.equal(r.inventory.secrets.replicationPassword, 'file:/srv/pgha/shared/repl');
    assert.equal(r.inventory.proxmox.privateKey, 'file:/srv/pgha/clusters/ssh/key');
    // Without a file there is nothing to resolve against: an error naming the field.
    const issues = validateInventory(doc, {}).issues;
    assert.ok(issues.some((i) => i.path === 'secrets.superuserPassword' && /absolute/.test(i.fix)));
  });

  void it('resolveClusterSecrets reads file: and env: references', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgha-schema-'));
    try {
      const doc = await labDoc();
      delete (doc.nodes as Record<string, unknown>).backup; // the core secrets only (the backup CT's have their own tests)
      await writeFile(join(dir, 'su'), 'from-file\n', { mode: 0o600 });
      doc.secrets = {
        superuserPassword: 'file:su',
        replicationPassword: 'env:PGHA_TEST_REPL',
        restApiPassword: 'file:su',
        haproxyStatsPassword: 'env:PGHA_TEST_REPL',
      };
      await writeFile(join(dir, 'c.yaml'), toYaml(doc));
      process.env.PGHA_TEST_REPL = 'from-env';
      const s = await resolveClusterSecrets(await loadInventory(join(dir, 'c.yaml')));
      assert.deepEqual(s, {
        superuserPassword: 'from-file',
        replicationPassword: 'from-env',
        restApiPassword: 'from-file',
        haproxyStatsPassword: 'from-env',
      });
      delete process.env.PGHA_TEST_REPL;
      await assert.rejects(
        resolveClusterSecrets(await loadInventory(join(dir, 'c.yaml'))),
        /PGHA_TEST_REPL is not set/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

void describe('each mistake names the field path and the fix', () => {
  void it('1. duplicate IP address', async () => {
    const d = await labDoc();
    d.nodes.postgres[1].ip = '10.213.50.21';
    expectError(d, 'nodes.postgres[1].ip', /its own address/, /already used by nodes\.postgres\[0\]/);
  });
  void it('2. duplicate CT id across roles', async () => {
    const d = await labDoc();
    d.nodes.etcd[2].vmid = 100;
    expectError(d, 'nodes.etcd[2].vmid', /its own CT id/, /already used by nodes\.haproxy\[0\]/);
  });
  void it('3. duplicate hostname', async () => {
    const d = await labDoc();
    d.nodes.haproxy[1].hostname = 'haproxy1';
    expectError(d, 'nodes.haproxy[1].hostname', /rename/);
  });
  void it('4. an even number of etcd members', async () => {
    const d = await labDoc();
    d.nodes.etcd.push({ vmid: 112, hostname: 'etcd4', ip: '10.213.50.54' });
    const e = expectError(d, 'nodes.etcd', /add or remove one member/, /4 members/);
    assert.match(e.expected, /odd number/);
  });
  void it('5. fewer than 3 etcd members', async () => {
    const d = await labDoc();
    d.nodes.etcd = d.nodes.etcd.slice(0, 1);
    expectError(d, 'nodes.etcd', /add 2 members/, /1 member$/);
  });
  void it('6. fewer than 2 PostgreSQL nodes', async () => {
    const d = await labDoc();
    d.nodes.postgres = d.nodes.postgres.slice(0, 1);
    expectError(d, 'nodes.postgres', /add PostgreSQL nodes/, /1 node/);
  });
  void it('7. no HAProxy node', async () => {
    const d = await labDoc();
    d.nodes.haproxy = [];
    expectError(d, 'nodes.haproxy', /add an HAProxy node/);
  });
  void it('8. an IP outside the declared subnet', async () => {
    const d = await labDoc();
    d.nodes.etcd[1].ip = '10.213.51.52';
    expectError(d, 'nodes.etcd[1].ip', /use an address in 10\.213\.50\.0\/24/, /outside 10\.213\.50\.0\/24/);
  });
  void it('9. a literal password: rejected, and never echoed', async () => {
    const d = await labDoc();
    d.secrets.superuserPassword = 'Qwe1234!';
    const e = expectError(d, 'secrets.superuserPassword', /file:\/path\/to\/it.*pgha secrets init.*env:NAME/);
    assert.doesNotMatch(JSON.stringify(errorsOf(d)), /Qwe1234/);
    assert.match(e.found, /literal value of 8 characters \(not shown\)/);
  });
  void it('10. a missing secret reference', async () => {
    const d = await labDoc();
    delete d.secrets.restApiPassword;
    const e = expectError(
      d,
      'secrets.restApiPassword',
      /^add secrets\.restApiPassword .*restApiPassword: file:/,
    );
    assert.match(e.found, /missing/);
  });
  void it('11. a malformed secret reference (env: with a bad name, empty file:)', async () => {
    const d = await labDoc();
    d.secrets.haproxyStatsPassword = 'env:1-BAD';
    d.secrets.replicationPassword = 'file:';
    expectError(d, 'secrets.haproxyStatsPassword', /env:NAME/);
    expectError(d, 'secrets.replicationPassword', /file:\/path\/to\/it/);
  });
  void it('12. an unknown key, with "did you mean"', async () => {
    const d = await labDoc();
    d.patroni.loop_wait = d.patroni.loopWait;
    delete d.patroni.loopWait;
    const e = expectError(d, 'patroni.loop_wait', /did you mean "loopWait"/);
    assert.match(e.expected, /loopWait/);
    const d2 = await labDoc();
    d2.nodes.postgres[0].ipaddr = '10.213.50.21';
    expectError(d2, 'nodes.postgres[0].ipaddr', /did you mean "ip"|remove "ipaddr"/);
    const d3 = await labDoc();
    d3.colour = 'blue';
    expectError(d3, 'colour', /remove "colour"/);
  });
  void it('13. a wrong type (a quoted CT id, an unquoted version)', async () => {
    const d = await labDoc();
    d.nodes.postgres[2].vmid = '104';
    expectError(
      d,
      'nodes.postgres[2].vmid',
      /set nodes\.postgres\[2\]\.vmid to a Proxmox CT id/,
      /"104" \(a string\)/,
    );
    const d2 = await labDoc();
    d2.versions.postgresql = 18.1;
    expectError(d2, 'versions.postgresql', /quote it: postgresql: "18.1"/);
  });
  void it('14. a bad port number', async () => {
    const d = await labDoc();
    d.ports.etcdPeer = 70000;
    expectError(d, 'ports.etcdPeer', /like etcdPeer: 2380/, /70000/);
    const d2 = await labDoc();
    d2.proxmox.port = 0;
    expectError(d2, 'proxmox.port', /like port: 22/);
  });
  void it('15. two services on one port of the same node', async () => {
    const d = await labDoc();
    d.ports.patroniRestApi = 5432;
    expectError(
      d,
      'ports.patroniRestApi',
      /choose another port for ports\.patroniRestApi/,
      /same as ports\.postgresql/,
    );
  });
  void it('16. an unknown PostgreSQL major', async () => {
    const d = await labDoc();
    d.versions.postgresql = '12.9';
    d.postgresql.binDir = '/usr/pgsql-12/bin';
    d.postgresql.dataDir = '/var/lib/pgsql/12/data';
    expectError(d, 'versions.postgresql', /use one of these majors/, /major 12/);
  });
  void it('17. a bin_dir of another major', async () => {
    const d = await labDoc();
    d.postgresql.binDir = '/usr/pgsql-17/bin';
    expectError(d, 'postgresql.binDir', /\/usr\/pgsql-18\/bin/);
  });
  void it('17b. digits outside a version segment of a path are not taken for a major', async () => {
    const d = await labDoc();
    d.postgresql.dataDir = '/tmp/pgha-render-9pOna0/data-18';
    assert.deepEqual(
      validateInventory(d).issues.filter((i) => i.severity === 'error'),
      [],
    );
    d.postgresql.dataDir = '/srv/postgresql-17.2/data';
    expectError(d, 'postgresql.dataDir', /a major-18 data directory/);
  });
  void it('18. a bad duration', async () => {
    const d = await labDoc();
    d.haproxy.checkInter = '1 sec';
    expectError(d, 'haproxy.checkInter', /like checkInter: 1s/);
  });
  void it('19. a malformed host key fingerprint', async () => {
    const d = await labDoc();
    d.proxmox.hostKeyFingerprint = 'SHA256:abc';
    expectError(d, 'proxmox.hostKeyFingerprint', /SHA256:<43 base64 characters>/);
    d.proxmox.hostKeyFingerprint = 'SHA256:' + 'A'.repeat(43);
    assert.deepEqual(errorsOf(d), []);
  });
  void it("20. Patroni timings that break Patroni's rule", async () => {
    const d = await labDoc();
    d.patroni.ttl = 30;
    expectError(d, 'patroni.ttl', /raise patroni\.ttl to 50/);
  });
  void it('21. a subnet that is not a network address, and an unknown install method', async () => {
    const d = await labDoc();
    d.subnet = '10.213.50.1/24';
    expectError(d, 'subnet', /write 10\.213\.50\.0\/24/);
    const d2 = await labDoc();
    d2.install.etcd = { method: 'apt' };
    expectError(d2, 'install.etcd.method', /"offline", "tarball"/);
  });
  void it('22. parameters pgha owns: md5 password_encryption, port', async () => {
    const d = await labDoc();
    d.postgresql.parameters.password_encryption = 'md5';
    d.postgresql.parameters.port = 5433;
    expectError(d, 'postgresql.parameters.password_encryption', /pgha sets scram-sha-256/);
    expectError(d, 'postgresql.parameters.port', /ports\.postgresql/);
  });
  void it('every mistake at once: all reported, each with its line in the file', async () => {
    const d = await labDoc();
    d.nodes.postgres[1].ip = '10.213.50.21';
    d.secrets.superuserPassword = 'hunter2';
    d.ports.etcdPeer = 'x';
    d.patroni.loop_wait = 1;
    const r = checkInventoryText(toYaml(d), '/tmp/x.yaml');
    assert.deepEqual(r.issues.map((i) => i.path).sort(), [
      'nodes.postgres[1].ip',
      'patroni.loop_wait',
      'ports.etcdPeer',
      'secrets.superuserPassword',
      'versions.patroni', // the warning: Patroni 3.3.0 with PostgreSQL 18
    ]);
    for (const i of r.issues) assert.match(r.where(i.path) ?? '', /^line \d+, column \d+$/, i.path);
  });
  void it('YAML errors (a duplicated key) name the line', () => {
    const r = checkInventoryText('cluster: a\ncluster: b\n', '/tmp/x.yaml');
    assert.equal(r.inventory, undefined);
    assert.match(r.issues[0]!.path, /line 2/);
    assert.match(r.issues[0]!.fix, /duplicated key/);
  });
  void it('InventoryError lists every error with the file name', async () => {
    const d = await labDoc();
    d.nodes.etcd.pop();
    d.nodes.haproxy = [];
    const dir = await mkdtemp(join(tmpdir(), 'pgha-schema-'));
    try {
      await writeFile(join(dir, 'bad.yaml'), toYaml(d));
      const err = await loadInventory(join(dir, 'bad.yaml')).catch((e: unknown) => e);
      assert.ok(err instanceof InventoryError);
      assert.match(err.message, /bad\.yaml: 2 problems/);
      assert.match(err.message, /nodes\.etcd \(line \d+, column \d+\): found 2 members/);
      assert.match(err.message, /nodes\.haproxy .*Fix: add an HAProxy node/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  void it('didYouMean: typos and snake_case, nothing for unrelated words', () => {
    assert.equal(didYouMean('retry_timeout', ['ttl', 'retryTimeout']), 'retryTimeout');
    assert.equal(didYouMean('hostnme', ['vmid', 'hostname', 'ip']), 'hostname');
    assert.equal(didYouMean('banana', ['vmid', 'hostname', 'ip']), undefined);
  });
});

void describe('the CLI (real processes, temporary files, no network)', () => {
  const pgha = join(root, 'bin', 'pgha.js');
  const cli = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
    run(process.execPath, [pgha, ...args], { cwd: root, env, timeout: 60_000 }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        stdout: e.stdout,
        stderr: e.stderr,
      }),
    );

  void it('pgha validate: exit 0 and a summary for lab.yaml; exit 1 and every error for a broken file', async () => {
    const ok = await cli(['validate', '--cluster', 'runbooks/clusters/lab.yaml']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /lab\.yaml: valid/);
    assert.match(ok.stdout, /etcd 3\.4 x3: etcd1\/CT 109\/10\.213\.50\.51/);
    const dir = await mkdtemp(join(tmpdir(), 'pgha-validate-'));
    try {
      const d = await labDoc();
      d.nodes.etcd[2].ip = '10.213.50.51';
      d.secrets.haproxyStatsPassword = 'admin';
      d.nodes.postgres = d.nodes.postgres.slice(0, 1);
      await writeFile(join(dir, 'bad.yaml'), toYaml(d));
      const bad = await cli(['validate', '--cluster', join(dir, 'bad.yaml')]);
      assert.equal(bad.code, 1, 'validate reports an invalid inventory: exit 1');
      assert.match(bad.stderr, /3 errors/);
      assert.match(
        bad.stderr,
        /nodes\.etcd\[2\]\.ip \(line \d+, column \d+\): found 10\.213\.50\.51, already used/,
      );
      assert.match(bad.stderr, /secrets\.haproxyStatsPassword .*Fix: store the password in a file/);
      assert.match(bad.stderr, /nodes\.postgres .*found 1 node/);
      const json = await cli(['validate', '--cluster', join(dir, 'bad.yaml'), '--json']);
      assert.equal(json.code, 1);
      const parsed = JSON.parse(json.stdout) as { valid: boolean; issues: { path: string }[] };
      assert.equal(parsed.valid, false);
      // The 3 errors, and the warning about Patroni 3.3.0 with PostgreSQL 18.
      assert.deepEqual(
        parsed.issues.map((i) => i.path).filter((p) => p === 'versions.patroni'),
        ['versions.patroni'],
      );
      assert.equal(parsed.issues.length, 4);
      const missing = await cli(['validate', '--cluster', join(dir, 'nope.yaml')]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /cannot be read \(ENOENT\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('pgha secrets init: creates missing file: secrets 0600 in 0700 dirs, never overwrites, never prints values', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgha-secrets-'));
    try {
      const d = await labDoc();
      delete (d.nodes as Record<string, unknown>).backup; // the core secrets only
      d.secrets = {
        superuserPassword: 'file:s/deep/superuser',
        replicationPassword: 'file:s/deep/replication',
        restApiPassword: 'env:PGHA_TEST_RESTAPI',
        haproxyStatsPassword: 'file:s/stats',
      };
      await writeFile(join(dir, 'c.yaml'), toYaml(d));
      await import('node:fs/promises').then((fs) => fs.mkdir(join(dir, 's'), { mode: 0o700 }));
      await writeFile(join(dir, 's', 'stats'), 'keep-me\n', { mode: 0o600 });
      const env = { ...process.env };
      delete env.PGHA_TEST_RESTAPI;
      const first = await cli(['secrets', 'init', '--cluster', join(dir, 'c.yaml')], env);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /secrets\.superuserPassword: file:\S+\/s\/deep\/superuser: created/);
      assert.match(first.stdout, /secrets\.haproxyStatsPassword: .*exists, kept/);
      assert.match(
        first.stdout,
        /secrets\.restApiPassword: env:PGHA_TEST_RESTAPI: environment variable is NOT set/,
      );
      const su = await readFile(join(dir, 's', 'deep', 'superuser'), 'utf8');
      const repl = await readFile(join(dir, 's', 'deep', 'replication'), 'utf8');
      assert.match(su, /^[A-Za-z0-9_-]{32}\n$/);
      assert.notEqual(su, repl);
      assert.equal((await stat(join(dir, 's', 'deep', 'superuser'))).mode & 0o777, 0o600);
      assert.equal((await stat(join(dir, 's', 'deep'))).mode & 0o777, 0o700);
      assert.equal(await readFile(join(dir, 's', 'stats'), 'utf8'), 'keep-me\n');
      for (const v of [su.trim(), repl.trim(), 'keep-me'])
        assert.ok(!first.stdout.includes(v) && !first.stderr.includes(v));
      // Second run: nothing changes.
      const second = await cli(['secrets', 'init', '--cluster', join(dir, 'c.yaml')], env);
      assert.equal(second.code, 0);
      assert.doesNotMatch(second.stdout, /created/);
      assert.equal(await readFile(join(dir, 's', 'deep', 'superuser'), 'utf8'), su);
      assert.deepEqual((await readdir(join(dir, 's'))).sort(), ['deep', 'stats']);
      // check: the env secret is missing → exit 1, values never shown.
      const check = await cli(['secrets', 'check', '--cluster', join(dir, 'c.yaml')], env);
      assert.equal(check.code, 1);
      assert.match(check.stdout, /secrets\.superuserPassword: ok \(32 characters\)/);
      assert.match(
        check.stdout,
        /secrets\.restApiPassword: .*PGHA_TEST_RESTAPI is not set.*fix: export PGHA_TEST_RESTAPI/,
      );
      assert.ok(!check.stdout.includes(su.trim()));
      // An invalid inventory creates nothing.
      d.secrets.superuserPassword = 'literal';
      d.secrets.replicationPassword = 'file:other/x';
      await writeFile(join(dir, 'bad.yaml'), toYaml(d));
      const bad = await cli(['secrets', 'init', '--cluster', join(dir, 'bad.yaml')], env);
      assert.equal(bad.code, 2, 'bad input: exit 2');
      assert.match(bad.stderr, /--cluster .*bad\.yaml": not a valid inventory, nothing done/);
      await assert.rejects(stat(join(dir, 'other')));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
