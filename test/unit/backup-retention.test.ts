/**
 * The retention over logical dumps (activities/backup/logical.ts `logicalObsolete`), Barman's two
 * policy forms: REDUNDANCY n keeps the n newest; RECOVERY WINDOW keeps every dump inside the window
 * and the newest one before it (a point at the window's start is restored from it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logicalObsolete } from '../../activities/backup/logical';

const DAY = 86400;
const now = 100 * DAY;
const dumps = [
  { name: 'pgha-a', at: now - 20 * DAY },
  { name: 'pgha-b', at: now - 9 * DAY },
  { name: 'pgha-c', at: now - 8 * DAY },
  { name: 'pgha-d', at: now - 3 * DAY },
  { name: 'pgha-e', at: now - 1 * DAY },
];

void test('REDUNDANCY n keeps the n newest, whatever the order given', () => {
  assert.deepEqual(logicalObsolete('REDUNDANCY 2', [...dumps].reverse(), now).sort(), [
    'pgha-a',
    'pgha-b',
    'pgha-c',
  ]);
  assert.deepEqual(logicalObsolete('redundancy 9', dumps, now), []);
});

void test('RECOVERY WINDOW keeps the window and the newest dump before it', () => {
  assert.deepEqual(logicalObsolete('RECOVERY WINDOW OF 7 DAYS', dumps, now).sort(), ['pgha-a', 'pgha-b']);
  assert.deepEqual(logicalObsolete('RECOVERY WINDOW OF 1 WEEKS', dumps, now).sort(), ['pgha-a', 'pgha-b']);
  assert.deepEqual(logicalObsolete('RECOVERY WINDOW OF 1 MONTHS', dumps, now), []);
  // Every dump older than the window: the newest is kept.
  assert.deepEqual(logicalObsolete('RECOVERY WINDOW OF 1 DAYS', dumps.slice(0, 3), now).sort(), [
    'pgha-a',
    'pgha-b',
  ]);
});

void test('anything else is refused', () => {
  assert.throws(() => logicalObsolete('KEEP 3', dumps, now), /REDUNDANCY <n>/);
});
