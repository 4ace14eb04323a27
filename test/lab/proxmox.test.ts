/**
 * activities/proxmox.ts against the lab's Proxmox stand-in (sshd on 10.213.50.1 + pct over LXC),
 * on the first PostgreSQL CT of the lab inventory (PGHA_LAB_INVENTORY, default
 * runbooks/clusters/lab.yaml); it only needs to run. Skips only when the lab is not up; CI brings it up first.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { utils } from 'ssh2';
import { parse } from 'yaml';
import { CommandTooLongError, HOST_COMMAND_MAX_BYTES, quote } from '../../activities/command';
import { ProxmoxError, ProxmoxHost, resolveProxmoxConfig } from '../../activities/proxmox';
import { labNotUpReason, labProxmoxSection as labSection } from '../../lab/testing';
import { Failures } from '../../runbooks/failures';
import { inCt } from '../helpers/lab-direct';
import { repoRoot } from '../helpers/local-common';

// Outside CI these skip when the lab is down; CI brings the lab up (lab.test.ts fails if it is not).
const skip = process.env.CI ? false : labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
const labProxmoxSection = () => labSection(LAB);
const target = skip
  ? { vmid: 103, hostname: 'pg103', ip: '10.213.50.22' }
  : (
      parse(readFileSync(LAB, 'utf8')) as {
        nodes: { postgres: { vmid: number; hostname: string; ip: string }[] };
      }
    ).nodes.postgres[0]!;
const CT = target.vmid;
const HOSTNAME = `${target.hostname}\n`;

/** The command lines of every process in the CT, read from /proc straight through LXC (not pgha's transport). */
function processesInCt(): string[] {
  const out = inCt(CT, [
    'sh',
    '-c',
    'for d in /proc/[0-9]*; do [ "$d" = /proc/$$ ] || { tr "\\0" " " <"$d/cmdline"; echo; } 2>/dev/null; done',
  ]);
  return out.split('\n').filter((l) => l.trim() !== '');
}

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
    host = await ProxmoxHost.fromInventory(labProxmoxSection());
  });
  after(() => host?.close());

  void it('runs a command in the CT (pct exec <vmid> -- hostname)', async () => {
    const r = await host.exec(CT, ['hostname']);
    assert.deepEqual(r, { code: 0, signal: undefined, stdout: HOSTNAME, stderr: '' });
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

  void it('fuzz: 200 random argv lists (any code point but NUL, long ones, leading dashes) round-trip byte-exact', async () => {
    const arg = fc
      .oneof(
        fc.string({ unit: 'binary', maxLength: 30 }),
        fc.string({ unit: 'binary', minLength: 1000, maxLength: 3000 }),
        fc.string({ unit: 'binary', maxLength: 10 }).map((x) => `-${x}`),
        fc.constantFrom('--', '-', '-e', "'", '"', '\\', '$(id)', '`id`', '\n', ' '),
      )
      // no NUL (no command line carries one) and no lone surrogate (not text): quote() refuses both
      .map((x) => x.replace(/\0/g, '').replace(/[\uD800-\uDFFF]/gu, ''));
    const seed = process.env.PGHA_FUZZ_SEED === undefined ? undefined : Number(process.env.PGHA_FUZZ_SEED);
    await fc.assert(
      fc.asyncProperty(fc.array(arg, { minLength: 1, maxLength: 8 }), async (args) => {
        const r = await host.execBuffer(CT, ['printf', '%s\\0', ...args]);
        assert.equal(r.code, 0, r.stderr);
        const expected = Buffer.concat(args.map((a) => Buffer.from(`${a}\0`, 'utf8')));
        assert.ok(r.stdout.equals(expected), `argv ${JSON.stringify(args).slice(0, 400)}`);
      }),
      // Bounded: shrinking a failure found over SSH re-runs the property hundreds of times (a flaky
      // exit status once held this file for its whole 20-minute timeout) — the first counterexample
      // is reported as found, with the seed to replay it.
      {
        numRuns: 200,
        seed,
        endOnFailure: true,
        interruptAfterTimeLimit: 180_000,
        markInterruptAsFailure: true,
      },
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
    assert.equal(cfg.hostname, target.hostname);
    assert.ok((cfg.net0 ?? '').split(',').includes(`ip=${target.ip}/24`), cfg.net0);
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

  void it('times out a command, kills it in the CT, and the connection keeps working', async () => {
    const t0 = Date.now();
    await assert.rejects(host.exec(CT, ['sleep', '31.5'], { timeoutMs: 1000 }), (err: unknown) => {
      isKind('Timeout')(err);
      // usually the kill finds them; sometimes the closed channel's hang-up reached them first
      assert.match(
        (err as Error).message,
        /killed it in CT \d+ \(\d+ process|it was no longer running in CT \d+/,
      );
      return true;
    });
    assert.ok(Date.now() - t0 < 5_000, `took ${Date.now() - t0} ms`);
    assert.equal((await host.exec(CT, ['hostname'])).stdout, HOSTNAME);
    assert.deepEqual(
      processesInCt().filter((p) => p.includes('31.5')),
      [],
      'the timed-out command still runs in the CT',
    );
  });

  void it('a cancelled command is gone from the CT when the call rejects, with its children', async () => {
    const ac = new AbortController();
    // a shell whose children never write: closing the SSH channel alone does not reliably reach them
    const p = host.exec(CT, ['sh', '-c', 'sleep 297.25 & sleep 298.25; wait'], {
      signal: ac.signal,
      timeoutMs: 600_000,
    });
    const started = Date.now() + 10_000;
    while (!processesInCt().some((l) => l.includes('298.25'))) {
      assert.ok(Date.now() < started, 'the command never started in the CT');
      await new Promise((r) => setTimeout(r, 200));
    }
    ac.abort();
    await assert.rejects(p, (err: unknown) => {
      isKind('Aborted')(err);
      // usually the kill finds them; sometimes the closed channel's hang-up reached them first
      assert.match(
        (err as Error).message,
        /killed it in CT \d+ \(\d+ process|it was no longer running in CT \d+/,
      );
      return true;
    });
    const left = processesInCt().filter((l) => /29[78]\.25/.test(l));
    assert.deepEqual(left, [], 'the cancelled command (or a child) still runs in the CT');
  });

  void it('refuses a 200 KiB argument list before anything runs; 100 KiB still works', async () => {
    const marker = `/tmp/pgha-ran-${randomBytes(4).toString('hex')}`;
    const big = 'x'.repeat(200 * 1024);
    await assert.rejects(host.exec(CT, ['sh', '-c', 'touch "$1"', 'sh', marker, big]), (err: unknown) => {
      assert.ok(err instanceof CommandTooLongError, String(err));
      assert.equal(err.type, Failures.CommandTooLongError);
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, /its 6 arguments .*largest: argument 5, 204800 bytes.*limit of 131071 bytes/);
      return true;
    });
    assert.throws(() => inCt(CT, ['test', '-e', marker]), 'the refused command ran');
    const fits = 'y'.repeat(100 * 1024);
    const r = await host.exec(CT, ['sh', '-c', 'printf %s "$1" | wc -c', 'sh', fits]);
    assert.deepEqual([r.code, r.stdout.trim()], [0, String(100 * 1024)]);
  });

  void it("the limit is the host's: a line of the limit runs there, one byte more fails (measured)", async () => {
    const lineOf = (bytes: number) => quote(['printf', '%s', 'z'.repeat(bytes - 'printf %s '.length)]);
    const fits = await host.run(lineOf(HOST_COMMAND_MAX_BYTES));
    assert.deepEqual([fits.code, fits.stdout.length], [0, HOST_COMMAND_MAX_BYTES - 'printf %s '.length]);
    // what an unchecked caller got before: not an error, an exit status a check reads as "false"
    const over = await host.run(lineOf(HOST_COMMAND_MAX_BYTES + 1));
    assert.notEqual(over.code, 0);
    assert.equal(over.stdout.length, 0);
  });

  void it('openSession: a long-lived command with its streams, killed in the CT on close', async () => {
    const s = await host.openSession(CT, ['sh', '-c', 'echo ready; exec cat', 'pgha-session-295']);
    const lines: string[] = [];
    s.stream.on('data', (b: Buffer) => lines.push(...b.toString('utf8').split('\n').filter(Boolean)));
    const until = async (want: string) => {
      const deadline = Date.now() + 10_000;
      while (!lines.includes(want)) {
        assert.ok(Date.now() < deadline, `no ${want} from the session (got ${JSON.stringify(lines)})`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await until('ready');
    s.stream.write('ping 1\n');
    await until('ping 1');
    assert.ok(
      processesInCt().some((l) => l.startsWith('cat')),
      'cat runs in the CT',
    );
    await s.close();
    assert.deepEqual(await s.exit.then((e) => typeof e.code), 'number');
    const left = processesInCt().filter((l) => l.startsWith('cat') || l.includes('pgha-session-295'));
    assert.deepEqual(left, [], 'the session still runs in the CT after close');
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
    assert.equal((await host.exec(CT, ['hostname'])).stdout, HOSTNAME);
  });
});

void describe('ProxmoxHost refuses what it cannot trust', { skip }, () => {
  void it('a host key that does not match the pinned fingerprint', async () => {
    const cfg = await resolveProxmoxConfig(labProxmoxSection());
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
    const cfg = await resolveProxmoxConfig(labProxmoxSection());
    for (const fp of ['', '*', 'any', 'MD5:aa:bb']) {
      assert.throws(() => new ProxmoxHost({ ...cfg, hostKeyFingerprint: fp }), isKind('BadConfig'));
    }
  });

  void it('a key the host does not know', async () => {
    const cfg = await resolveProxmoxConfig(labProxmoxSection());
    const stranger = utils.generateKeyPairSync('ed25519');
    const host = new ProxmoxHost({ ...cfg, privateKey: stranger.private });
    try {
      await assert.rejects(host.exec(CT, ['true']), isKind('AuthFailed'));
    } finally {
      host.close();
    }
  });

  void it('secret references that do not resolve name the reference, not a value', async () => {
    const section = { ...labProxmoxSection(), privateKey: 'env:PGHA_TEST_NO_SUCH_VARIABLE' };
    await assert.rejects(ProxmoxHost.fromInventory(section), /env:PGHA_TEST_NO_SUCH_VARIABLE/);
  });
});
