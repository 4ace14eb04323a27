/**
 * activities/proxmox.ts against the lab's Proxmox stand-in (sshd on 10.213.50.1 + pct over LXC).
 * Skips only when the lab is not up; CI brings it up first.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { utils } from 'ssh2';
import { ProxmoxError, ProxmoxHost, resolveProxmoxConfig } from '../../activities/proxmox';
import { DEFAULT_INVENTORY, readLabInventory } from '../../lab/inventory';
import { labNotUpReason, labProxmoxSection } from '../../lab/testing';

// Outside CI these skip when the lab is down; CI brings the lab up (lab.test.ts fails if it is not).
const skip = process.env.CI ? false : labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? DEFAULT_INVENTORY;
/** The second PostgreSQL CT of the lab inventory (lab.yaml: 103 pg103). */
const { vmid: CT, hostname: CT_NAME } = readLabInventory(LAB).nodes.filter((n) => n.role === 'postgres')[1]!;

function isKind(kind: string) {
  return (err: unknown) => {
    assert.ok(err instanceof ProxmoxError, `expected a ProxmoxError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    return true;
  };
}

void describe('ProxmoxHost against the lab', { skip }, () => {
  let host: ProxmoxHost;

  before(async () => {
    host = await ProxmoxHost.fromInventory(labProxmoxSection(LAB));
  });
  after(() => host?.close());

  void it(`runs a command in the CT (pct exec ${CT} -- hostname)`, async () => {
    const r = await host.exec(CT, ['hostname']);
    assert.deepEqual(r, { code: 0, signal: undefined, stdout: `${CT_NAME}\n`, stderr: '' });
  });

  void it('passes exit codes and stderr through', async () => {
    assert.equal((await host.exec(CT, ['true'])).code, 0);
    assert.equal((await host.exec(CT, ['false'])).code, 1);
    const r = await host.exec(CT, ['sh', '-c', 'echo out; echo err >&2; exit 42']);
    assert.deepEqual([r.code, r.stdout, r.stderr], [42, 'out\n', 'err\n']);
    assert.equal((await host.exec(CT, ['no-such-command-pgha'])).code, 127);
  });

  void it('execChecked throws with the exit code and the tail of stderr', async () => {
    await assert.rejects(
      host.execChecked(CT, ['sh', '-c', 'for i in $(seq 1 50); do echo "line $i" >&2; done; exit 3']),
      (err: unknown) => {
        isKind('CommandFailed')(err);
        const e = err as ProxmoxError;
        assert.equal(e.details.code, 3);
        assert.match(e.message, /exited with 3/);
        assert.match(e.details.stderrTail ?? '', /line 50$/);
        assert.doesNotMatch(e.details.stderrTail ?? '', /line 1\n/);
        return true;
      },
    );
  });

  void it('feeds stdin byte-exact (binary, 1 MiB)', async () => {
    const data = randomBytes(1024 * 1024);
    const r = await host.execBuffer(CT, ['cat'], { stdin: data });
    assert.equal(r.code, 0);
    assert.ok(r.stdout.equals(data), 'stdin came back changed');
    const s = await host.exec(CT, ['sha256sum'], { stdin: 'пароль\n' });
    assert.equal(s.stdout.split(' ')[0], createHash('sha256').update('пароль\n').digest('hex'));
  });

  void it('returns 10 MB+ of output intact', async () => {
    const size = 12 * 1024 * 1024;
    const r = await host.execBuffer(
      CT,
      [
        'sh',
        '-c',
        'head -c "$1" /dev/urandom >/tmp/pgha-big && sha256sum </tmp/pgha-big >&2 && cat /tmp/pgha-big && rm /tmp/pgha-big',
        'sh',
        String(size),
      ],
      { timeoutMs: 60_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, size);
    assert.equal(createHash('sha256').update(r.stdout).digest('hex'), r.stderr.split(' ')[0]);
  });

  void it('delivers nasty arguments byte-exact', async () => {
    const args = [
      'with spaces',
      `single ' quote`,
      'double " quote',
      '$(touch /tmp/pgha-pwned)',
      '`id`',
      '$HOME',
      'a; touch /tmp/pgha-pwned',
      'x | cat',
      'two\nlines',
      '*',
      '/etc/*',
      '[a-z]?',
      '~',
      'пароль λ 日本語 🐘',
      '',
      '-n',
      '--',
      'back\\slash',
      'tab\tcr\r',
    ];
    const r = await host.execBuffer(CT, ['printf', '%s\\0', ...args]);
    assert.equal(r.code, 0, r.stderr);
    const expected = Buffer.concat(args.map((a) => Buffer.from(`${a}\0`, 'utf8')));
    assert.ok(r.stdout.equals(expected), `got ${JSON.stringify(r.stdout.toString('utf8'))}`);
    assert.equal(
      (await host.exec(CT, ['test', '-e', '/tmp/pgha-pwned'])).code,
      1,
      'an argument was executed',
    );
  });

  void it('pushes a file with mode and owner, atomically and idempotently', async () => {
    const path = '/tmp/pgha push test.conf';
    await host.exec(CT, ['rm', '-f', path]);
    const content = `secret = 'x'\n${randomBytes(16).toString('hex')}\n`;
    assert.deepEqual(await host.push(CT, path, content, { mode: 0o640, owner: 'root', group: 'daemon' }), {
      changed: true,
    });
    assert.equal((await host.execChecked(CT, ['stat', '-c', '%a %U %G', path])).stdout, '640 root daemon\n');
    assert.equal((await host.pull(CT, path)).toString('utf8'), content);
    assert.deepEqual(await host.push(CT, path, content, { mode: 0o640, owner: 'root', group: 'daemon' }), {
      changed: false,
    });
    assert.deepEqual(await host.push(CT, path, content, { mode: 0o600, owner: 'root', group: 'daemon' }), {
      changed: true,
    });
    assert.equal((await host.execChecked(CT, ['stat', '-c', '%a', path])).stdout, '600\n');
    const leftovers = await host.exec(CT, ['sh', '-c', 'ls -a /tmp | grep -c pgha-push || true']);
    assert.equal(leftovers.stdout.trim(), '0', 'a temporary file was left behind');
    await host.execChecked(CT, ['rm', '-f', path]);
  });

  void it('push to a missing directory fails with a clear error', async () => {
    await assert.rejects(host.push(CT, '/nonexistent-dir/x', 'x'), (err: unknown) => {
      isKind('CommandFailed')(err);
      assert.match((err as Error).message, /directory \/nonexistent-dir does not exist/);
      return true;
    });
  });

  void it('reports status and config as Proxmox does', async () => {
    assert.equal(await host.status(CT), 'running');
    const cfg = await host.config(CT);
    assert.equal(cfg.hostname, CT_NAME);
    assert.match(cfg.net0 ?? '', /(^|,)ip=10\.213\.50\.22\/24(,|$)/);
    assert.deepEqual(await host.start(CT), { changed: false }, 'start of a running CT is a no-op');
  });

  void it('an unknown CT is a typed, non-retryable error', async () => {
    await assert.rejects(host.exec(999, ['true']), (err: unknown) => {
      isKind('UnknownCt')(err);
      assert.equal((err as ProxmoxError).retryable, false);
      assert.match((err as Error).message, /CT 999 does not exist.*nodes\/[^/]+\/lxc\/999\.conf/);
      return true;
    });
    await assert.rejects(host.status(999), isKind('UnknownCt'));
  });

  void it('times out a command, and the connection keeps working', async () => {
    const t0 = Date.now();
    await assert.rejects(host.exec(CT, ['sleep', '31.5'], { timeoutMs: 1000 }), isKind('Timeout'));
    assert.ok(Date.now() - t0 < 5_000, `took ${Date.now() - t0} ms`);
    assert.equal((await host.exec(CT, ['hostname'])).stdout, `${CT_NAME}\n`);
    // the command we gave up on does not linger in the CT (bounded there by timeout + 5 s)
    const deadline = Date.now() + 20_000;
    const lingering = async () =>
      (await host.exec(CT, ['pgrep', '-a', '-x', 'sleep'])).stdout.includes('sleep 31.5');
    while (await lingering()) {
      assert.ok(Date.now() < deadline, 'the timed-out command still runs in the CT');
      await new Promise((r) => setTimeout(r, 500));
    }
  });

  void it('honours an AbortSignal', async () => {
    const ac = new AbortController();
    const p = host.exec(CT, ['sleep', '30'], { signal: ac.signal });
    setTimeout(() => ac.abort(), 300);
    await assert.rejects(p, isKind('Aborted'));
  });

  void it('runs many commands concurrently over the one connection', async () => {
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) => host.exec(CT, ['echo', String(i)])),
    );
    assert.deepEqual(
      results.map((r) => r.stdout),
      results.map((_, i) => `${i}\n`),
    );
  });

  void it('reconnects after the connection drops', async () => {
    const client = await (host as unknown as { conn: Promise<{ destroy(): void }> }).conn;
    client.destroy();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await host.exec(CT, ['hostname'])).stdout, `${CT_NAME}\n`);
  });
});

void describe('ProxmoxHost refuses what it cannot trust', { skip }, () => {
  void it('a host key that does not match the pinned fingerprint', async () => {
    const cfg = await resolveProxmoxConfig(labProxmoxSection(LAB));
    const wrong = `SHA256:${createHash('sha256').update('not the key').digest('base64').replace(/=+$/, '')}`;
    const host = new ProxmoxHost({ ...cfg, hostKeyFingerprint: wrong });
    try {
      await assert.rejects(host.exec(CT, ['true']), (err: unknown) => {
        isKind('HostKeyMismatch')(err);
        assert.ok((err as Error).message.includes(cfg.hostKeyFingerprint), 'names the presented key');
        assert.ok((err as Error).message.includes(wrong), 'names the pinned key');
        return true;
      });
    } finally {
      host.close();
    }
  });

  void it('a fingerprint that is not SHA256:... (no accept-any)', async () => {
    const cfg = await resolveProxmoxConfig(labProxmoxSection(LAB));
    for (const fp of ['', '*', 'any', 'MD5:aa:bb']) {
      assert.throws(() => new ProxmoxHost({ ...cfg, hostKeyFingerprint: fp }), isKind('BadConfig'));
    }
  });

  void it('a key the host does not know', async () => {
    const cfg = await resolveProxmoxConfig(labProxmoxSection(LAB));
    const stranger = utils.generateKeyPairSync('ed25519');
    const host = new ProxmoxHost({ ...cfg, privateKey: stranger.private });
    try {
      await assert.rejects(host.exec(CT, ['true']), isKind('AuthFailed'));
    } finally {
      host.close();
    }
  });

  void it('secret references that do not resolve name the reference, not a value', async () => {
    const section = { ...labProxmoxSection(LAB), privateKey: 'env:PGHA_TEST_NO_SUCH_VARIABLE' };
    await assert.rejects(ProxmoxHost.fromInventory(section), /env:PGHA_TEST_NO_SUCH_VARIABLE/);
  });
});
