/**
 * The guardian's pure parts and its neighbours: the timing profiles (schema defaults, the
 * contradiction check, validate's explanation), the HAProxy log reader's argv, and the record's id.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { collectHaproxyLog, haproxyLogArgv } from '../../activities/status';
import { validateInventory } from '../../runbooks/schema';
import { explainTiming, resolveTiming, TIMING_PROFILES } from '../../runbooks/timing';
import { failoverObservedId } from '../../workflows/guardian';
import type { FailoverFacts } from '../../workflows/guardian';
import { repoRoot } from '../helpers/local-common';

const lab = () =>
  parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab.yaml'), 'utf8')) as {
    patroni: Record<string, unknown>;
  };
function withPatroni(patch: Record<string, unknown>, drop: string[] = []) {
  const doc = lab();
  for (const k of drop) delete doc.patroni[k];
  Object.assign(doc.patroni, patch);
  return validateInventory(doc);
}

void test('timing profiles: recommended gives its values; no timing and no values is the seed', () => {
  const r = withPatroni({ timing: 'recommended' }, ['ttl', 'loopWait', 'retryTimeout']);
  assert.deepEqual(
    r.issues.filter((i) => i.severity === 'error'),
    [],
  );
  assert.equal(r.inventory!.patroni.timing, 'recommended');
  assert.equal(r.inventory!.patroni.ttl, TIMING_PROFILES.recommended.ttl);
  assert.equal(r.inventory!.patroni.loopWait, TIMING_PROFILES.recommended.loopWait);
  assert.equal(r.inventory!.patroni.retryTimeout, TIMING_PROFILES.recommended.retryTimeout);
  const s = withPatroni({}, ['ttl', 'loopWait', 'retryTimeout']);
  assert.equal(s.inventory!.patroni.timing, 'seed');
  assert.equal(s.inventory!.patroni.ttl, 60);
  // Patroni's own rule holds for every profile
  for (const p of Object.values(TIMING_PROFILES)) assert.ok(p.loopWait + 2 * p.retryTimeout <= p.ttl);
});

void test('timing: an explicit value that contradicts the profile is refused, naming the field and the fix', () => {
  const r = withPatroni({ timing: 'recommended', ttl: 30 }, ['loopWait', 'retryTimeout']);
  assert.equal(r.inventory, undefined);
  const i = r.issues.find((x) => x.path === 'patroni.ttl');
  assert.ok(i, JSON.stringify(r.issues));
  assert.match(i.fix, /timing: custom/);
  const c = withPatroni({ timing: 'custom', ttl: 70 }, ['loopWait', 'retryTimeout']);
  assert.equal(c.inventory!.patroni.ttl, 70);
  assert.equal(c.inventory!.patroni.loopWait, 10, "custom fills the rest from the seed's values");
});

void test('validate explains a timing in seconds of write downtime', () => {
  const lines = explainTiming(resolveTiming({ timing: 'recommended' })).join('\n');
  assert.match(lines, /ttl 20s, loop_wait 5s, retry_timeout 7s/);
  assert.match(lines, /writes refused for ~15–21 s/);
  assert.match(lines, /ridden out up to 7 s/);
  assert.match(lines, /seed ~50–61 s, recommended ~15–21 s/);
});

void test('the HAProxy log reader: journalctl of the unit, a bounded line count', async () => {
  assert.deepEqual(haproxyLogArgv(20), [
    'journalctl',
    '-u',
    'haproxy',
    '-n',
    '20',
    '--no-pager',
    '-o',
    'short-iso-precise',
  ]);
  for (const bad of [0, -1, 1.5, 1001, Number.NaN]) assert.throws(() => haproxyLogArgv(bad), /--haproxy-log/);
  // a node whose command fails is reported as unreadable, the others still read
  const seen: number[] = [];
  const logs = await collectHaproxyLog(
    {
      exec: async (vmid) => {
        seen.push(vmid);
        return vmid === 100
          ? { code: 0, stdout: 'a\n\nb\n', stderr: '' }
          : { code: 1, stdout: '', stderr: 'No journal files were found.' };
      },
    },
    [
      { name: 'haproxy1', vmid: 100 },
      { name: 'haproxy2', vmid: 101 },
    ],
    5,
  );
  assert.deepEqual(seen.sort(), [100, 101]);
  assert.deepEqual(logs[0], { name: 'haproxy1', lines: ['a', 'b'] });
  assert.match(logs[1]!.error ?? '', /journalctl exited 1: No journal files/);
});

void test("a failover record's id: one per new leader and timeline", () => {
  const f = { newLeader: 'pg103', timeline: 4 } as FailoverFacts;
  assert.equal(failoverObservedId('lab', f, 1), 'failover-observed-lab-pg103-tl4');
  assert.equal(failoverObservedId('lab', f, 2), failoverObservedId('lab', f, 1), 'the time does not matter');
  assert.equal(
    failoverObservedId('lab', { newLeader: 'pg103' } as FailoverFacts, 7),
    'failover-observed-lab-pg103-at7',
  );
});
