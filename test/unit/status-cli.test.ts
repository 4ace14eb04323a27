/**
 * `npx pgha status` end to end, as an operator runs it: an inventory file, the CLI process, its
 * exit code and output. The cluster is made of real etcd members and real PostgreSQL servers on
 * loopback addresses that stand in for the CTs' (127.0.0.51-53, 127.0.0.21-23; one port per role
 * as in an inventory), with Patroni's REST API faked on the same addresses. HAProxy is skipped
 * (--no-haproxy): it is reached through the Proxmox host, which the lab e2e tests cover.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { parse, stringify } from 'yaml';
import { freePort, repoRoot } from '../helpers/local-common';
import { startLocalEtcd, type LocalEtcdCluster } from '../helpers/local-etcd';
import { FakePatroni } from '../helpers/local-patroni';
import { startLocalPostgres, type LocalPostgres } from '../helpers/local-postgres';

function pgha(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin', 'pgha.js'), ...args], {
      cwd: repoRoot,
      env: { ...process.env, PGHA_TARGET_NETWORKS: '127.0.0.0/8', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

void describe('npx pgha status (the CLI) against real etcd and PostgreSQL on loopback addresses', () => {
  let dir: string;
  let inventory: string;
  let etcd: LocalEtcdCluster;
  const pg: Record<string, LocalPostgres> = {};
  const fakes: FakePatroni[] = [];
  const ip = { pg102: '127.0.0.21', pg103: '127.0.0.22', pg104: '127.0.0.23' };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgha-status-cli-'));
    const ports = {
      etcdClient: await freePort(),
      etcdPeer: await freePort(),
      postgresql: await freePort(),
      patroniRestApi: await freePort(),
    };
    etcd = await startLocalEtcd(3, {
      hosts: ['127.0.0.51', '127.0.0.52', '127.0.0.53'],
      clientPort: ports.etcdClient,
      peerPort: ports.etcdPeer,
    });
    pg.pg103 = await startLocalPostgres({ name: 'pg103', host: ip.pg103, port: ports.postgresql });
    [pg.pg102, pg.pg104] = await Promise.all([
      startLocalPostgres({ name: 'pg102', host: ip.pg102, port: ports.postgresql, primary: pg.pg103 }),
      startLocalPostgres({ name: 'pg104', host: ip.pg104, port: ports.postgresql, primary: pg.pg103 }),
    ]);
    const cluster = {
      scope: 'postgres',
      members: (['pg102', 'pg103', 'pg104'] as const).map((n) => ({
        name: n,
        role: n === 'pg103' ? 'leader' : 'replica',
        state: n === 'pg103' ? 'running' : 'streaming',
        host: ip[n],
        port: ports.postgresql,
        timeline: 1,
        ...(n === 'pg103' ? {} : { lag: 0 }),
      })),
    };
    for (const n of ['pg102', 'pg103', 'pg104'] as const) {
      const f = new FakePatroni({
        name: n,
        role: n === 'pg103' ? 'primary' : 'replica',
        host: ip[n],
        port: ports.patroniRestApi,
      });
      await f.start();
      f.routes.set('GET /cluster', { status: 200, body: cluster });
      fakes.push(f);
    }
    const c = new Etcd3({ hosts: etcd.endpoints });
    await c.put('/patroni/postgres/leader').value('pg103');
    c.close();

    // The lab inventory, moved onto loopback: same CT ids and hostnames, these ports, secrets here.
    const inv = parse(await readFile(join(repoRoot, 'runbooks', 'clusters', 'lab.yaml'), 'utf8')) as {
      subnet: string;
      proxmox: { host: string; privateKey: string; hostKeyFingerprint: string };
      nodes: Record<string, { ip: string }[]>;
      ports: Record<string, number>;
      secrets: Record<string, string>;
      postgresql: { allowedNetworks: string[] };
    };
    inv.subnet = '127.0.0.0/8';
    inv.postgresql.allowedNetworks = [inv.subnet]; // pg_hba must admit every node (validated)
    inv.proxmox.host = '127.0.0.1';
    delete inv.nodes.backup; // this test covers etcd, Patroni and PostgreSQL; the backup CT has no stand-in
    for (const role of ['haproxy', 'postgres', 'etcd']) {
      for (const n of inv.nodes[role] ?? []) n.ip = n.ip.replace(/^10\.213\.50\./, '127.0.0.');
    }
    inv.ports = { ...inv.ports, ...ports };
    const secret = async (name: string, value: string) => {
      await writeFile(join(dir, name), `${value}\n`, { mode: 0o600 });
      return `file:${join(dir, name)}`;
    };
    inv.proxmox.privateKey = await secret('id_ed25519', 'not a key: --no-haproxy never connects');
    inv.proxmox.hostKeyFingerprint = `SHA256:${'A'.repeat(43)}`;
    inv.secrets = {
      superuserPassword: await secret('superuser-password', pg.pg103.password),
      replicationPassword: await secret('replication-password', 'unused'),
      restApiPassword: await secret('restapi-password', 'unused'),
      haproxyStatsPassword: await secret('haproxy-stats-password', 'unused'),
    };
    inventory = join(dir, 'loopback.yaml');
    await writeFile(inventory, stringify(inv));
  });

  after(async () => {
    for (const f of fakes) await f.stop();
    await Promise.all([pg.pg102?.stop(), pg.pg104?.stop()]);
    await pg.pg103?.stop();
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void it('--json on a consistent cluster: exit 0 and a healthy status object', async () => {
    const r = await pgha(['status', '--cluster', inventory, '--no-haproxy', '--json']);
    assert.equal(r.code, 0, r.stderr || r.stdout);
    const s = JSON.parse(r.stdout) as {
      verdict: { status: string; reasons: string[] };
      etcd: { healthy: number; members: { endpoint: string }[] };
      patroni: {
        leader: string;
        leaderKey: { value: string };
        members: { name: string; streaming: boolean | null; sql: unknown }[];
      };
      haproxy: { asked: boolean; reason: string };
    };
    assert.deepEqual(s.verdict, { status: 'healthy', reasons: [] });
    assert.equal(s.etcd.healthy, 3);
    assert.ok(s.etcd.members[0]!.endpoint.startsWith('http://127.0.0.51:'));
    assert.equal(s.patroni.leader, 'pg103');
    assert.equal(s.patroni.leaderKey.value, 'pg103');
    assert.deepEqual(
      s.patroni.members.map((m) => [m.name, m.streaming, m.sql]),
      [
        ['pg102', true, { inRecovery: true, timeline: 1 }],
        ['pg103', null, { inRecovery: false, timeline: 1 }],
        ['pg104', true, { inRecovery: true, timeline: 1 }],
      ],
    );
    assert.deepEqual(s.haproxy, { asked: false, reason: 'not asked (--no-haproxy)' });
    assert.ok(!r.stdout.includes(pg.pg103!.password), 'no password in the output');
  });

  void it('the table report; a follower etcd member down makes it degraded: exit 1', async () => {
    const ok = await pgha(['status', '--cluster', inventory, '--no-haproxy']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^Cluster lab — collected /);
    assert.match(ok.stdout, /etcd: 3\/3 healthy, leader etcd[123]/);
    assert.match(
      ok.stdout,
      /Patroni \(scope postgres\): leader pg103; etcd \/patroni\/postgres\/leader = pg103/,
    );
    assert.match(ok.stdout, /│ pg104 +│ 127\.0\.0\.23 +│ replica +│ streaming +│ streaming +│ 1 +│ \d+ B/);
    assert.match(ok.stdout, /Verdict: HEALTHY\n$/);

    const leader = JSON.parse(
      (await pgha(['status', '--cluster', inventory, '--no-haproxy', '--no-sql', '--json'])).stdout,
    ) as {
      etcd: { leader: string };
    };
    const follower = etcd.members.find((m) => m.name !== leader.etcd.leader)!;
    await etcd.kill(follower.name);
    const r = await pgha(['status', '--cluster', inventory, '--no-haproxy']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(
      r.stdout,
      new RegExp(
        `Verdict: DEGRADED\\n {2}- etcd member ${follower.name} \\(http://127\\.0\\.0\\.5\\d:\\d+\\) is unhealthy`,
      ),
    );
  });

  void it('refuses targets outside PGHA_TARGET_NETWORKS before connecting; a missing inventory is a clear error', async () => {
    const r = await pgha(['status', '--cluster', inventory, '--no-haproxy'], {
      PGHA_TARGET_NETWORKS: '10.213.50.0/24',
    });
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /refusing to connect to 127\.0\.0\.51, .*outside PGHA_TARGET_NETWORKS=10\.213\.50\.0\/24/,
    );
    const missing = await pgha(['status', '--cluster', join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 2); // bad input: refused before anything (clients/program.ts)
    assert.match(missing.stderr, /nope\.yaml cannot be read \(ENOENT\)/);
  });
});
