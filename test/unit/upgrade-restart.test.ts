/**
 * The PostgreSQL upgrade's restart of one member onto the new build, over a fake Patroni REST API
 * and a fake port probe: a build whose server never starts is named within a few HA loops even when
 * Patroni keeps reporting 'restarting' (Patroni 3.3 does), while a start that is only slow (the
 * postmaster answers "starting up") is waited for and not mistaken for a broken build.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createUpgradeActivities } from '../../activities/upgrade';
import type { UpgradeDeps } from '../../activities/upgrade';
import type { PatroniNodeStatus } from '../../activities/patroni';
import type { Inventory } from '../../runbooks/schema';
import { labInventory } from '../helpers/lab-inventory';

/** The lab's inventory with a 1 s HA loop, so "three loops" is 3 s here. */
const inv: Inventory = (() => {
  const i = labInventory();
  return { ...i, patroni: { ...i.patroni, loopWait: 1 } };
})();
const member = inv.nodes.postgres[1]!.hostname;

type Listening = 'accepting' | 'answering' | 'refused' | 'unreachable';

/** After the POST, Patroni says `state` and the port answers as `listening()` says. */
function fake(state: string, listening: () => Listening) {
  let posted = 0;
  let probes = 0;
  const before: PatroniNodeStatus = {
    state: 'running',
    role: 'replica',
    server_version: 180004,
    postmaster_start_time: '2026-11-29 08:00:00+00:00',
  };
  const deps = {
    patroni: {
      patroniGetPatroni: async () => ({
        status: 200,
        body: posted ? { state, role: 'replica' } : before,
      }),
      patroniRestart: async () => {
        posted++;
        return { status: 200, body: null, text: 'restarted successfully' };
      },
    },
    postgres: {
      pgListening: async () => {
        probes++;
        return listening();
      },
    },
  } as unknown as UpgradeDeps;
  return { deps, posted: () => posted, probes: () => probes };
}

const restart = (deps: UpgradeDeps, timeoutMs: number) =>
  new MockActivityEnvironment().run(createUpgradeActivities(deps).upgradeRestartMember, {
    inv,
    member,
    wantNum: 180006,
    fromNum: 180004,
    postmasterBefore: '2026-11-29 08:00:00+00:00',
    maxLagBytes: 10 << 20,
    timeoutMs,
  });

void test("a build whose server never listens: named within three HA loops though Patroni says 'restarting'", async () => {
  const f = fake('restarting', () => 'refused');
  const t0 = Date.now();
  await assert.rejects(restart(f.deps, 60_000), (err: unknown) => {
    assert.ok(err instanceof ApplicationFailure, String(err));
    assert.match(
      err.message,
      new RegExp(
        `^${member}: PostgreSQL does not start \\(nothing listens on ${inv.nodes.postgres[1]!.ip}:` +
          `${inv.ports.postgresql} for [34] s while Patroni reports 'restarting'\\)`,
      ),
    );
    return true;
  });
  const took = Date.now() - t0;
  assert.ok(took >= 3000 && took < 20_000, `named after ${took} ms (three 1 s loops, not the 60 s bound)`);
  assert.equal(f.posted(), 1, 'one POST /restart');
});

void test('a slow start (the postmaster answers "starting up") is waited for to the bound, not called broken', async () => {
  const f = fake('starting', () => 'answering');
  await assert.rejects(restart(f.deps, 5000), (err: unknown) => {
    assert.ok(err instanceof ApplicationFailure, String(err));
    assert.match(err.message, /timed out after 5000 ms .*state starting, server answering/);
    assert.doesNotMatch(err.message, /does not start/);
    return true;
  });
  assert.ok(f.probes() >= 5, `the port was probed on each look (${f.probes()})`);
});

void test('a port refused only briefly (between stop and start) does not count: the clock starts again', async () => {
  let n = 0;
  // Refused, then answering, then refused again: never three loops in a row of silence.
  const f = fake('restarting', () => (++n % 4 === 0 ? 'answering' : 'refused'));
  await assert.rejects(restart(f.deps, 6000), (err: unknown) => {
    assert.ok(err instanceof ApplicationFailure, String(err));
    assert.match(err.message, /timed out after 6000 ms/);
    return true;
  });
});
