import { describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { MockActivityEnvironment } from '@temporalio/testing';
import {
  BEAT_EVERY_MS,
  clearIntent,
  carriedIntents,
  heartbeat,
  heartbeating,
  keepBeating,
  keepInHeartbeats,
  pollUntil,
  PollTimeoutError,
  priorIntent,
  recordIntent,
  whileAlive,
  aliveWhileRunning,
} from '../../activities/poll';
import { resolveSecretRef, SecretRefError } from '../../activities/secrets';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

void describe('bounded polls: heartbeats inside an activity, plain functions outside', () => {
  void it('outside an activity heartbeat is a no-op and the poll still works', async () => {
    heartbeat({ any: 'thing' });
    let n = 0;
    const v = await pollUntil({ what: 'three checks', timeoutMs: 5000, intervalMs: 10 }, async () => {
      n++;
      return { done: n === 3, value: n, describe: `n=${n}` };
    });
    assert.equal(v, 3);
  });

  void it('inside an activity every check heartbeats its progress', async () => {
    const env = new MockActivityEnvironment();
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    let n = 0;
    await env.run(() =>
      pollUntil({ what: 'two checks', timeoutMs: 5000, intervalMs: 10 }, async () => {
        n++;
        return { done: n === 2, value: n, describe: `n=${n}` };
      }),
    );
    assert.deepEqual(beats, [
      { what: 'two checks', attempt: 1, last: 'n=1' },
      { what: 'two checks', attempt: 2, last: 'n=2' },
    ]);
  });

  void it('stops when the activity is cancelled, without waiting for its deadline', async () => {
    const env = new MockActivityEnvironment();
    const started = Date.now();
    const p = env.run(() =>
      pollUntil({ what: 'never', timeoutMs: 60_000, intervalMs: 50 }, async () => ({
        done: false,
        value: 0,
        describe: 'no',
      })),
    );
    setTimeout(() => env.cancel(), 200);
    await assert.rejects(p);
    assert.ok(Date.now() - started < 30_000, 'cancelled long before the 60 s deadline');
  });

  void it('times out with what was waited for and the last observation', async () => {
    await assert.rejects(
      pollUntil({ what: 'the moon', timeoutMs: 100, intervalMs: 20 }, async () => ({
        done: false,
        value: 'x',
        describe: 'still the sun',
      })),
      (err: unknown) =>
        err instanceof PollTimeoutError &&
        /waiting for the moon .*last seen: still the sun/.test(err.message) &&
        err.last === 'x',
    );
    await assert.rejects(
      pollUntil({ what: 'x', timeoutMs: 0, intervalMs: 10 }, async () => ({
        done: true,
        value: 1,
        describe: '',
      })),
      RangeError,
    );
  });
});

void describe('intents in heartbeat details: recorded before acting, carried by every later beat and retry', () => {
  void it('an intent rides in every later heartbeat, and a retry seeded with the last beat sees and keeps it', async () => {
    const env1 = new MockActivityEnvironment({ attempt: 1 });
    const beats1: unknown[] = [];
    env1.on('heartbeat', (d: unknown) => beats1.push(d));
    await env1.run(async () => {
      assert.equal(priorIntent('restart:pg103'), undefined);
      recordIntent('restart:pg103', { postmasterBefore: 't0' }, { phase: 'POST' });
      heartbeat({ what: 'waiting', attempt: 1 });
      heartbeat('plain');
    });
    assert.deepEqual(beats1, [
      { phase: 'POST', intents: { 'restart:pg103': { postmasterBefore: 't0' } } },
      { what: 'waiting', attempt: 1, intents: { 'restart:pg103': { postmasterBefore: 't0' } } },
      { details: 'plain', intents: { 'restart:pg103': { postmasterBefore: 't0' } } },
    ]);
    // The retry: the server hands it the last heartbeat details of the attempt that timed out.
    const env2 = new MockActivityEnvironment({ attempt: 2, heartbeatDetails: beats1.at(-1) });
    const beats2: unknown[] = [];
    env2.on('heartbeat', (d: unknown) => beats2.push(d));
    await env2.run(async () => {
      assert.deepEqual(priorIntent('restart:pg103'), { postmasterBefore: 't0' });
      await pollUntil({ what: 'back', timeoutMs: 5000, intervalMs: 10 }, async () => ({
        done: true,
        value: 1,
        describe: 'back',
      }));
      recordIntent('reinit:pg104', 1);
    });
    assert.deepEqual(beats2, [
      { what: 'back', attempt: 1, last: 'back', intents: { 'restart:pg103': { postmasterBefore: 't0' } } },
      { intent: 'reinit:pg104', intents: { 'restart:pg103': { postmasterBefore: 't0' }, 'reinit:pg104': 1 } },
    ]);
  });

  void it('clearIntent drops one intent (the act did not happen) and says so in a heartbeat', async () => {
    const env = new MockActivityEnvironment({ attempt: 1 });
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    await env.run(async () => {
      recordIntent('restart:pg103', 1);
      clearIntent('restart:pg103', { phase: 'refused' });
      assert.equal(priorIntent('restart:pg103'), undefined);
    });
    assert.deepEqual(beats.at(-1), { phase: 'refused', intents: {} });
  });

  void it('outside an activity intents are no-ops (the CLI has no retry)', () => {
    recordIntent('x', 1);
    assert.equal(priorIntent('x'), undefined);
  });

  void it('keepBeating heartbeats once per interval while the work is pending, and stops after', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const env = new MockActivityEnvironment();
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    let finish!: (v: number) => void;
    const p = env.run(() => keepBeating(new Promise<number>((r) => (finish = r)), { phase: 'POST' }));
    while (!finish) await new Promise((r) => setImmediate(r));
    t.mock.timers.tick(BEAT_EVERY_MS * 4);
    assert.deepEqual(beats, Array(4).fill({ phase: 'POST' }));
    finish(7);
    assert.equal(await p, 7);
    t.mock.timers.tick(BEAT_EVERY_MS * 4);
    assert.equal(beats.length, 4, 'no heartbeat after the work settled');
  });

  void it('a poll whose probe hangs heartbeats through it', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const env = new MockActivityEnvironment();
    const beats: { what?: string; attempt?: number }[] = [];
    env.on('heartbeat', (d: { what?: string }) => beats.push(d));
    let answer!: () => void;
    const p = env.run(() =>
      pollUntil(
        { what: 'slow member', timeoutMs: 600_000, intervalMs: 10 },
        () =>
          new Promise<{ done: boolean; value: number; describe: string }>(
            (r) => (answer = () => r({ done: true, value: 1, describe: 'answered' })),
          ),
      ),
    );
    while (!answer) await new Promise((r) => setImmediate(r));
    t.mock.timers.tick(BEAT_EVERY_MS * 2);
    assert.equal(beats.length, 2, 'two beats while the probe hangs');
    assert.ok(beats.every((b) => b.what === 'slow member' && b.attempt === 1));
    answer();
    await p;
  });
});

void describe('secret references', () => {
  void it('resolves env: and file: (trailing newline dropped); errors name the ref, never a value', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgha-secret-'));
    try {
      await writeFile(join(dir, 'pw'), 'file-secret\n', { mode: 0o600 });
      await writeFile(join(dir, 'empty'), '\n', { mode: 0o600 });
      process.env.PGHA_TEST_SECRET_X = 'env-secret';
      assert.equal(await resolveSecretRef('env:PGHA_TEST_SECRET_X'), 'env-secret');
      assert.equal(await resolveSecretRef(`file:${join(dir, 'pw')}`), 'file-secret');
      await assert.rejects(
        resolveSecretRef('env:PGHA_TEST_SECRET_MISSING'),
        (e: unknown) => e instanceof SecretRefError && /PGHA_TEST_SECRET_MISSING is not set/.test(e.message),
      );
      await assert.rejects(resolveSecretRef(`file:${join(dir, 'nope')}`), /cannot read the file \(ENOENT\)/);
      await assert.rejects(resolveSecretRef(`file:${join(dir, 'empty')}`), /resolves to an empty value/);
      await assert.rejects(
        resolveSecretRef('hunter2'),
        (e: unknown) =>
          e instanceof SecretRefError &&
          /must be env:NAME or file:/.test(e.message) &&
          !e.message.includes('hunter2'),
      );
      await assert.rejects(
        resolveSecretRef('file:relative/path'),
        /must be env:NAME or file:\/absolute\/path/,
      );
    } finally {
      delete process.env.PGHA_TEST_SECRET_X;
      await rm(dir, { recursive: true, force: true });
    }
  });
});

void describe('kept heartbeat details and heartbeating waits', () => {
  void it('what an attempt keeps is sent at once and carried by every later heartbeat, whoever sends it', async () => {
    const env = new MockActivityEnvironment();
    const beats: Record<string, unknown>[] = [];
    env.on('heartbeat', (d: Record<string, unknown>) => beats.push(d));
    await env.run(async () => {
      heartbeat({ phase: 'before' });
      keepInHeartbeats({ intent: { to: 'pg103' } });
      heartbeat({ phase: 'after', intent: 'overwritten?' });
      heartbeat('a bare value');
      keepInHeartbeats({ posted: { at: 1 } });
      let n = 0;
      await pollUntil({ what: 'two checks', timeoutMs: 5000, intervalMs: 1 }, async () => {
        n++;
        return { done: n === 2, value: n, describe: `n=${n}` };
      });
    });
    assert.deepEqual(beats[0], { phase: 'before' });
    assert.deepEqual(beats[1], { intents: { intent: { to: 'pg103' } } });
    assert.deepEqual(
      beats[2],
      { phase: 'after', intent: 'overwritten?', intents: { intent: { to: 'pg103' } } },
      'a kept value rides beside the progress details and is never overwritten by them',
    );
    assert.deepEqual(beats[3], { details: 'a bare value', intents: { intent: { to: 'pg103' } } });
    assert.deepEqual(beats[4], { intents: { intent: { to: 'pg103' }, posted: { at: 1 } } });
    for (const b of beats.slice(5)) {
      assert.deepEqual(b.intents, { intent: { to: 'pg103' }, posted: { at: 1 } });
      assert.equal(b.what, 'two checks');
    }
    assert.equal(beats.length, 7);
  });

  void it('a retried attempt starts from what the timed-out one kept (carriedIntents)', async () => {
    const first = new MockActivityEnvironment();
    const beats: unknown[] = [];
    first.on('heartbeat', (d: unknown) => beats.push(d));
    await first.run(async () => {
      keepInHeartbeats({ intent: { to: 'pg103' } });
      keepInHeartbeats({ posted: { at: 7 } });
      heartbeat({ phase: 'waiting' });
    });
    const retry = new MockActivityEnvironment({ attempt: 2, heartbeatDetails: beats.at(-1) });
    const seen = await retry.run(async () => carriedIntents<{ intent: unknown; posted: unknown }>());
    assert.deepEqual(seen, { intent: { to: 'pg103' }, posted: { at: 7 } });
  });

  void it('a wait inside heartbeating() heartbeats its phase on a ticker until it ends', async () => {
    mock.timers.enable({ apis: ['setInterval'] });
    try {
      const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 4000 });
      const beats: unknown[] = [];
      env.on('heartbeat', (d: unknown) => beats.push(d));
      let phase = 'connecting';
      let release!: () => void;
      const wait = new Promise<void>((r) => (release = r));
      let started = false;
      const done = env.run(() =>
        heartbeating(
          () => phase,
          () => {
            started = true;
            return wait;
          },
        ),
      );
      while (!started) await new Promise((r) => setImmediate(r));
      mock.timers.tick(3000); // a quarter of the heartbeat timeout: one beat a second
      phase = 'waiting for the answer';
      mock.timers.tick(2000);
      release();
      await done;
      mock.timers.tick(5000); // the ticker stopped with the wait
      assert.deepEqual(beats, [
        { phase: 'connecting' },
        { phase: 'connecting' },
        { phase: 'connecting' },
        { phase: 'waiting for the answer' },
        { phase: 'waiting for the answer' },
      ]);
    } finally {
      mock.timers.reset();
    }
  });
  void it('whileAlive repeats the last heartbeat (with its intents) while the activity awaits anything, and stops with it', async () => {
    mock.timers.enable({ apis: ['setInterval'] });
    try {
      const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 10_000 });
      const beats: unknown[] = [];
      env.on('heartbeat', (d: unknown) => beats.push(d));
      let release!: () => void;
      const wait = new Promise<void>((r) => (release = r));
      let started = false;
      const acts = aliveWhileRunning({
        step: async (n: number) => {
          recordIntent('restart:pg103', n);
          heartbeat({ phase: 'POST /restart' });
          started = true;
          await wait; // an await that beats nothing itself (a command, a connect)
          return n + 1;
        },
      });
      const done = env.run(() => acts.step(41));
      while (!started) await new Promise((r) => setImmediate(r));
      const own = beats.length;
      mock.timers.tick(Math.min(BEAT_EVERY_MS, 10_000 / 3) * 3);
      const ticked = beats.slice(own);
      assert.equal(ticked.length, 3, 'one repeat per tick while the await is pending');
      for (const b of ticked)
        assert.deepEqual(b, { phase: 'POST /restart', intents: { 'restart:pg103': 41 } });
      release();
      assert.equal(await done, 42);
      const after = beats.length;
      mock.timers.tick(BEAT_EVERY_MS * 5);
      assert.equal(beats.length, after, 'the ticker stopped with the activity');
    } finally {
      mock.timers.reset();
    }
  });

  void it('whileAlive is a plain call outside an activity and in one without a heartbeat timeout', async () => {
    assert.equal(await whileAlive(async () => 7), 7);
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: undefined });
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    assert.equal(await env.run(() => whileAlive(async () => 8)), 8);
    assert.deepEqual(beats, []);
  });
});
