/**
 * activities/proxmox/ssh.ts: a command's exit status is kept even when ssh2 emits it before the
 * collector listens — as it does when the exec's reply, the output and the exit status arrive in
 * one read (measured against the lab's OpenSSH under load: 4 in 40 fast commands read as exit 255
 * with their whole output, until the status was recorded from the exec callback on).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { ClientChannel } from 'ssh2';
import { collect, recordExit } from '../../activities/proxmox/ssh';

/** A channel as ssh2 gives it: an emitter with stderr, end/close/signal. */
function channel(): ClientChannel & EventEmitter {
  const ch = new EventEmitter() as unknown as ClientChannel & EventEmitter;
  Object.assign(ch, {
    stderr: new EventEmitter(),
    end: () => undefined,
    close: () => undefined,
    signal: () => undefined,
  });
  return ch;
}

const opts = { timeoutMs: 5000, maxOutputBytes: 1024, where: 'root@host:22' };

void test('an exit status emitted before collect listens is kept when the channel was recorded at once', async () => {
  const ch = recordExit(channel());
  ch.emit('exit', 0); // in the same read as the exec's reply: before any await of the caller
  const r = collect(ch, 'sha256sum -- f', opts);
  ch.emit('data', Buffer.from('abc  f\n'));
  ch.emit('close');
  const out = await r;
  assert.equal(out.code, 0);
  assert.equal(out.stdout.toString(), 'abc  f\n');
});

void test('the same early exit on a channel never recorded is lost (exit 255): why recordExit exists', async () => {
  const ch = channel();
  ch.emit('exit', 0);
  const r = collect(ch, 'sha256sum -- f', opts);
  ch.emit('close');
  assert.equal((await r).code, 255);
});

void test('a status that arrives while collect listens wins; a signal maps to 128 + its number', async () => {
  const ch = recordExit(channel());
  const r = collect(ch, 'false', opts);
  ch.emit('exit', 1);
  ch.emit('close');
  assert.equal((await r).code, 1);
  const k = recordExit(channel());
  k.emit('exit', null, 'KILL');
  const rk = collect(k, 'sleep 9', opts);
  k.emit('close');
  assert.equal((await rk).code, 137);
});
