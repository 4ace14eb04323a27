/**
 * activities/etcd-ops/replace.ts over an etcd cluster modelled in memory (member list, health,
 * member add/remove) with the target CT's pre-flight answers: refused while the member is healthy,
 * without a quorum, or onto a CT holding another cluster's or stale etcd data — each before any
 * member is removed or added; remove before add; a retried add (a crash between `member add` and the
 * start: the member listed with an empty name) finds the member instead of adding a second; the
 * join wait accepts only the new member id under its name, caught up. And the inventory edit that
 * `pgha etcd replace --vmid/--ip` makes: only those values change, a bad value names its field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { createEtcdOpsActivities } from '../../activities/etcd-ops';
import type { EtcdOpsDeps } from '../../activities/etcd-ops';
import type { EtcdEndpointHealth, EtcdMember } from '../../activities/etcd';
import { CLUSTER_MARKER } from '../../activities/nodes/types';
import { Failures } from '../../runbooks/failures';
import { parseInventory } from '../../runbooks/schema';
import type { Inventory } from '../../runbooks/schema';
import { checkedEdit, editInventoryFile, setEtcdMemberAt } from '../../clients/inventory-edit';
import { withEtcdMemberAt } from '../../workflows/etcd-replace';
import { repoRoot } from '../helpers/local-common';
import { labInventoryInput } from '../helpers/lab-inventory';

const LAB = join(repoRoot, 'runbooks/clusters/lab.yaml');
const raw = labInventoryInput();
const inv: Inventory = parseInventory(raw);
const moved: Inventory = parseInventory(withEtcdMemberAt(raw, 'etcd3', { vmid: 112, ip: '10.213.50.54' }));

interface Model {
  list: EtcdMember[];
  /** Endpoints that answer healthy, and the member id each answers as. */
  up: Map<string, string>;
  /** The target CT: running, its cluster marker, whether it has etcd data. */
  ct: { running: boolean; marker?: string; data: boolean };
  events: string[];
}

const peer = (ip: string) => `http://${ip}:2380`;
const client = (ip: string) => `http://${ip}:2379`;

function model(over: Partial<Model> = {}): Model {
  const list = inv.nodes.etcd.map((n, i) => ({
    id: `a${i + 1}`,
    name: n.hostname,
    peerUrls: [peer(n.ip)],
    clientUrls: [client(n.ip)],
    isLearner: false,
  }));
  // etcd3 is dead: listed, not answering.
  const up = new Map(inv.nodes.etcd.slice(0, 2).map((n, i) => [client(n.ip), `a${i + 1}`]));
  return { list, up, ct: { running: true, data: false }, events: [], ...over };
}

function depsOf(m: Model): EtcdOpsDeps {
  let next = 10;
  const health = (endpoint: string): EtcdEndpointHealth => {
    const id = m.up.get(endpoint);
    if (!id) return { endpoint, healthy: false, error: 'unavailable: connection refused', tookMs: 1 };
    return {
      endpoint,
      healthy: true,
      memberId: id,
      leaderId: 'a1',
      isLeader: id === 'a1',
      raftIndex: '100',
      raftTerm: '4',
      alarms: [],
      tookMs: 1,
    };
  };
  return {
    etcd: {
      etcdEndpointHealth: async (a: { endpoints: string[] }) => a.endpoints.map(health),
      etcdMembers: async () => m.list.map((x) => ({ ...x })),
      etcdPatroniLeaderKey: async () => ({ key: '/patroni/postgres/leader', value: 'pg102' }),
    },
    admin: {
      memberRemove: async (a: { id: string }) => {
        m.events.push(`remove ${a.id}`);
        m.list = m.list.filter((x) => x.id !== a.id);
      },
      memberAdd: async (a: { peerUrl: string }) => {
        const id = `b${next++}`;
        m.events.push(`add ${a.peerUrl}`);
        m.list.push({ id, name: '', peerUrls: [a.peerUrl], clientUrls: [], isLearner: false });
        return id;
      },
    },
    hostFor: async () => ({
      status: async () => (m.ct.running ? 'running' : 'stopped'),
      exec: async (_vmid: number, argv: string[]) => {
        if (argv[0] === 'cat' && argv[1] === CLUSTER_MARKER)
          return m.ct.marker
            ? { code: 0, stdout: `${m.ct.marker}\n`, stderr: '' }
            : { code: 1, stdout: '', stderr: 'No such file' };
        if (argv[0] === 'test' && argv[1] === '-e')
          return { code: m.ct.data ? 0 : 1, stdout: '', stderr: '' };
        if (argv[0] === 'systemctl') return { code: 0, stdout: `${'c'.repeat(32)}\n`, stderr: '' };
        throw new Error(`unexpected command: ${argv.join(' ')}`);
      },
    }),
  } as unknown as EtcdOpsDeps;
}

async function refused(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ApplicationFailure, String(err));
    assert.equal(err.type, Failures.EtcdRefused);
    assert.match(err.message, re);
    return true;
  });
}

const args = { inv, next: inv, member: 'etcd3' };

void test('refused while the member is healthy, naming what it saw and pgha etcd restart', async () => {
  const m = model();
  m.up.set(client(inv.nodes.etcd[2]!.ip), 'a3');
  await refused(
    createEtcdOpsActivities(depsOf(m)).etcdReplacePrecheck(args),
    /etcd3 is healthy: http:\/\/10\.213\.50\.53:2379 healthy \(id a3.*Nothing was done.*pgha etcd restart --member etcd3/,
  );
  assert.deepEqual(m.events, []);
});

void test('refused without a quorum of the others, pointing at the snapshot restore', async () => {
  const m = model();
  m.up.delete(client(inv.nodes.etcd[1]!.ip));
  const t0 = Date.now();
  await refused(
    createEtcdOpsActivities({ ...depsOf(m), quorumWaitMs: 2500 }).etcdReplacePrecheck(args),
    /needs a quorum of 2 of 3 etcd members without etcd3; healthy: 1 .*etcd2 unhealthy.*asked for 2\.5 s.*restore etcd from a snapshot/,
  );
  assert.ok(Date.now() - t0 >= 2500, 'the others were asked again for the whole wait before the refusal');
  assert.deepEqual(m.events, []);
});

void test('a quorum that comes back within the wait (an election after the lost member) is accepted', async () => {
  const m = model();
  const etcd2 = client(inv.nodes.etcd[1]!.ip);
  const id2 = m.up.get(etcd2)!;
  m.up.delete(etcd2);
  const back = setTimeout(() => m.up.set(etcd2, id2), 1500);
  try {
    const plan = await createEtcdOpsActivities({ ...depsOf(m), quorumWaitMs: 20_000 }).etcdReplacePrecheck(
      args,
    );
    assert.equal(plan.member, 'etcd3');
  } finally {
    clearTimeout(back);
  }
  assert.deepEqual(m.events, []);
});

void test('refused onto a CT of another cluster, one that is stopped, or one holding stale etcd data', async () => {
  const acts = (ct: Model['ct']) => createEtcdOpsActivities(depsOf(model({ ct })));
  await refused(
    acts({ running: true, marker: 'other', data: true }).etcdReplacePrecheck(args),
    /belongs to cluster "other"/,
  );
  await refused(
    acts({ running: true, data: true }).etcdReplacePrecheck(args),
    /already holds data at \/var\/lib\/etcd\/member that pgha did not create/,
  );
  await refused(
    acts({ running: false, data: false }).etcdReplacePrecheck(args),
    /CT 111 \(etcd3\) is stopped.*lab up/,
  );
  await refused(
    acts({ running: true, marker: inv.cluster, data: true }).etcdReplacePrecheck(args),
    /holds etcd data at \/var\/lib\/etcd\/member, and etcd lists no member added for it.*mv \/var\/lib\/etcd\/member/,
  );
});

void test('remove, then add; a retried add finds the unstarted member instead of adding a second', async () => {
  const m = model();
  const acts = createEtcdOpsActivities(depsOf(m));
  const plan = await acts.etcdReplacePrecheck(args);
  assert.equal(plan.oldId, 'a3');
  assert.equal(plan.alreadyReplaced, false);
  assert.deepEqual(await acts.etcdReplaceRemove({ ...args, oldId: 'a3' }), { action: 'removed' });
  assert.deepEqual(await acts.etcdReplaceRemove({ ...args, oldId: 'a3' }), { action: 'already-removed' });
  const first = await acts.etcdReplaceAdd({ ...args, oldId: 'a3' });
  const again = await acts.etcdReplaceAdd({ ...args, oldId: 'a3' });
  assert.equal(first.action, 'added');
  assert.deepEqual(again, { id: first.id, action: 'found-added' });
  assert.deepEqual(m.events, ['remove a3', `add ${peer('10.213.50.53')}`]);
  // A new run after a crash there: the pre-check sees our unstarted member (and the CT's data).
  m.ct = { running: true, marker: inv.cluster, data: true };
  const resumed = await acts.etcdReplacePrecheck(args);
  assert.equal(resumed.oldId, undefined);
  assert.equal(resumed.pendingId, first.id);
});

void test('an unstarted member for another address is refused with the member remove to run', async () => {
  const m = model();
  m.list.push({ id: 'dd', name: '', peerUrls: [peer('10.213.50.99')], clientUrls: [], isLearner: false });
  await refused(
    createEtcdOpsActivities(depsOf(m)).etcdReplacePrecheck(args),
    /added but never started: dd \(http:\/\/10\.213\.50\.99:2380\) — remove it \(etcdctl member remove dd\)/,
  );
});

void test('the join wait: done only when the new id answers under its name, caught up, all healthy', async () => {
  const m = model();
  const acts = createEtcdOpsActivities(depsOf(m));
  await acts.etcdReplaceRemove({ ...args, oldId: 'a3' });
  const { id } = await acts.etcdReplaceAdd({ inv, next: moved, member: 'etcd3', oldId: 'a3' });
  // Not started yet: times out with what it saw.
  await assert.rejects(
    acts.etcdReplaceJoined({ next: moved, member: 'etcd3', memberId: id, waitTimeoutMs: 600 }),
    /timed out .*etcd3 unhealthy.*member list: etcd1, etcd2, \(unstarted b10\)/,
  );
  m.list.find((x) => x.id === id)!.name = 'etcd3';
  m.up.set(client('10.213.50.54'), id);
  const r = await acts.etcdReplaceJoined({ next: moved, member: 'etcd3', memberId: id, waitTimeoutMs: 5000 });
  assert.equal(r.memberId, id);
  assert.equal(r.patroniLeader, 'pg102');
  assert.ok(r.members.every((x) => x.healthy));
  // A re-run after that success: found replaced, nothing removed or added.
  const plan = await acts.etcdReplacePrecheck({ inv, next: moved, member: 'etcd3' });
  assert.equal(plan.alreadyReplaced, true);
  assert.equal(plan.joinedId, id);
});

void test('the inventory edit: only vmid and ip change; a clash names its field; the file keeps its mode', () => {
  const text = readFileSync(LAB, 'utf8');
  const out = setEtcdMemberAt(text, 'etcd3', { vmid: 112, ip: '10.213.50.54' });
  const changed = text.split('\n').filter((l, i) => l !== out.split('\n')[i]);
  assert.deepEqual(changed, ['    - { vmid: 111, hostname: etcd3, ip: 10.213.50.53 }']);
  assert.match(out, /- \{ vmid: 112, hostname: etcd3, ip: 10\.213\.50\.54 \}/);
  assert.equal(setEtcdMemberAt(text, 'etcd3', {}), text);
  assert.throws(
    () => checkedEdit(LAB, text, (t) => setEtcdMemberAt(t, 'etcd3', { ip: '203.0.113.9' })),
    /nodes\.etcd\[2\]\.ip/,
  );
  assert.throws(
    () => checkedEdit(LAB, text, (t) => setEtcdMemberAt(t, 'etcd3', { vmid: 109 })),
    /nodes\.etcd\[2\]\.vmid|vmid 109/,
  );
});

void test('editInventoryFile writes the edit atomically with the same mode', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgha-inv-'));
  const file = join(dir, 'lab.yaml');
  writeFileSync(file, readFileSync(LAB, 'utf8'));
  chmodSync(file, 0o640);
  const edit = (t: string) => setEtcdMemberAt(t, 'etcd3', { ip: '10.213.50.54' });
  assert.equal(await editInventoryFile(file, edit), true);
  assert.equal(await editInventoryFile(file, edit), false);
  assert.match(readFileSync(file, 'utf8'), /hostname: etcd3, ip: 10\.213\.50\.54 \}/);
  assert.equal(statSync(file).mode & 0o777, 0o640);
});
