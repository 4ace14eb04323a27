/**
 * activities/etcd-ops/ restart decisions over a fake etcd cluster (endpoint health, move-leader and
 * systemd's InvocationID answered from an in-memory model): look before acting (a member restarted
 * since the pre-check is not restarted again), never below quorum (refused, nothing done), the
 * leader's leadership moved to the most caught-up follower before its restart, a failing restart
 * reported as EtcdFailed, and the DCS clean refused while a Patroni runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { createEtcdOpsActivities } from '../../activities/etcd-ops';
import type { EtcdOpsDeps } from '../../activities/etcd-ops';
import type { EtcdEndpointHealth } from '../../activities/etcd';
import { Failures } from '../../runbooks/failures';
import type { Inventory } from '../../runbooks/schema';
import { labInventory } from '../helpers/lab-inventory';

const inv: Inventory = labInventory();

interface FakeMember {
  name: string;
  vmid: number;
  endpoint: string;
  id: string;
  up: boolean;
  raftIndex: number;
  invocation: string;
}

/** An etcd cluster in memory; `events` records every act (restart, move-leader) in order. */
function fakeCluster(opts: { leader: string; down?: string[]; restartExit?: number }) {
  const members: FakeMember[] = inv.nodes.etcd.map((n, i) => ({
    name: n.hostname,
    vmid: n.vmid,
    endpoint: `http://${n.ip}:${inv.ports.etcdClient}`,
    id: `a${i + 1}`,
    up: !(opts.down ?? []).includes(n.hostname),
    raftIndex: 100 + i,
    invocation: `${'0'.repeat(31)}${i + 1}`,
  }));
  let leader = opts.leader;
  let n = 0;
  let keys = ['/patroni/postgres/leader', '/patroni/postgres/members/pg102'];
  const events: string[] = [];
  const byVmid = (vmid: number) => members.find((m) => m.vmid === vmid)!;
  const health = (endpoint: string): EtcdEndpointHealth => {
    const m = members.find((x) => x.endpoint === endpoint)!;
    if (!m.up) return { endpoint, healthy: false, error: 'unavailable: connection refused', tookMs: 1 };
    const lid = members.find((x) => x.name === leader)!.id;
    return {
      endpoint,
      healthy: true,
      memberId: m.id,
      leaderId: lid,
      isLeader: m.name === leader,
      raftIndex: String(Math.max(...members.map((x) => x.raftIndex))),
      alarms: [],
      tookMs: 1,
    };
  };
  const deps = {
    etcd: {
      etcdEndpointHealth: async (a: { endpoints: string[] }) => a.endpoints.map(health),
      etcdCluster: async () => ({
        endpoints: [],
        members: null,
        leader: { id: members.find((x) => x.name === leader)!.id, name: leader },
        healthyCount: members.filter((m) => m.up).length,
        quorum: members.filter((m) => m.up).length >= 2,
      }),
      etcdPatroniKeys: async () => ({
        prefix: '/patroni/postgres/',
        keys: keys.map((key) => ({ key })),
      }),
    },
    admin: {
      moveLeader: async (a: { leaderEndpoint: string; targetId: string }) => {
        const from = members.find((m) => m.endpoint === a.leaderEndpoint)!;
        assert.equal(from.name, leader, 'move-leader is sent to the leader');
        leader = members.find((m) => m.id === a.targetId)!.name;
        events.push(`move-leader ${from.name}→${leader}`);
      },
      deletePatroniKeys: async () => {
        events.push('delete');
        const deleted = keys.length;
        keys = [];
        return deleted;
      },
    },
    patroni: {
      patroniGetPatroni: async () => {
        throw new Error('connection refused');
      },
    },
    hostFor: async () => ({
      exec: async (vmid: number, argv: string[]) => {
        const m = byVmid(vmid);
        if (argv.join(' ') === 'systemctl show --property=InvocationID --value etcd') {
          return { code: 0, stdout: `${m.invocation}\n`, stderr: '' };
        }
        if (argv.join(' ') === 'systemctl restart etcd') {
          events.push(`restart ${m.name}${m.name === leader ? ' (as leader)' : ''}`);
          if (opts.restartExit)
            return { code: opts.restartExit, stdout: '', stderr: 'Job for etcd.service failed' };
          m.invocation = `${'f'.repeat(30)}${String(++n).padStart(2, '0')}`;
          return { code: 0, stdout: '', stderr: '' };
        }
        if (argv[0] === 'systemctl' && argv[1] === 'is-active') {
          return { code: 3, stdout: 'inactive\n', stderr: '' };
        }
        throw new Error(`unexpected command in CT ${vmid}: ${argv.join(' ')}`);
      },
      status: async (vmid: number) => (vmid === inv.nodes.postgres[0]!.vmid ? 'running' : 'stopped'),
      push: async () => ({ changed: false }),
      run: async () => ({ code: 0, stdout: Buffer.from(''), stderr: '' }),
    }),
  };
  return { members, events, deps: deps as unknown as EtcdOpsDeps, leader: () => leader };
}

async function rejects(p: Promise<unknown>, type: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ApplicationFailure, String(err));
    assert.equal(err.type, type);
    assert.match(err.message, re);
    return true;
  });
}

void test('a follower: restarted once, then watched until healthy and caught up', async () => {
  const c = fakeCluster({ leader: 'etcd2' });
  const acts = createEtcdOpsActivities(c.deps);
  const before = c.members[0]!.invocation;
  const r = await acts.etcdRestartMember({ inv, member: 'etcd1', invocationBefore: before });
  assert.deepEqual(c.events, ['restart etcd1']);
  assert.equal(r.action, 'restarted');
  assert.equal(r.invocationBefore, before);
  assert.notEqual(r.invocationAfter, before);
  assert.equal(r.leaderAfter, 'etcd2');
});

void test('restarted since the pre-check (a resumed run): not restarted again', async () => {
  const c = fakeCluster({ leader: 'etcd2' });
  const acts = createEtcdOpsActivities(c.deps);
  const r = await acts.etcdRestartMember({
    inv,
    member: 'etcd3',
    invocationBefore: 'an-older-invocation-id',
  });
  assert.deepEqual(c.events, []);
  assert.equal(r.action, 'already-restarted');
});

void test('never below quorum: with another member down, refused and nothing done', async () => {
  const c = fakeCluster({ leader: 'etcd2', down: ['etcd3'] });
  const acts = createEtcdOpsActivities(c.deps);
  await rejects(
    acts.etcdRestartMember({ inv, member: 'etcd1', invocationBefore: c.members[0]!.invocation }),
    Failures.EtcdRefused,
    /would leave 1 of 3 etcd members healthy, below the quorum of 2 .*nothing was done/,
  );
  await rejects(
    acts.etcdRestartMember({ inv, member: 'etcd2', invocationBefore: c.members[1]!.invocation }),
    Failures.EtcdRefused,
    /below the quorum/,
  );
  assert.deepEqual(c.events, []);
});

void test('the leader: leadership moved to the most caught-up follower first, then restarted as a follower', async () => {
  const c = fakeCluster({ leader: 'etcd1' });
  c.members[2]!.raftIndex = 500; // etcd3 is the most caught up
  const acts = createEtcdOpsActivities(c.deps);
  const r = await acts.etcdRestartMember({
    inv,
    member: 'etcd1',
    invocationBefore: c.members[0]!.invocation,
  });
  assert.deepEqual(c.events, ['move-leader etcd1→etcd3', 'restart etcd1']);
  assert.equal(r.leaderMovedTo, 'etcd3');
  assert.equal(r.leaderAfter, 'etcd3');
});

void test('a restart that fails is EtcdFailed with systemd’s words; an unknown member is refused', async () => {
  const c = fakeCluster({ leader: 'etcd2', restartExit: 1 });
  const acts = createEtcdOpsActivities(c.deps);
  await rejects(
    acts.etcdRestartMember({ inv, member: 'etcd1', invocationBefore: c.members[0]!.invocation }),
    Failures.EtcdFailed,
    /systemctl restart etcd .* exited 1: Job for etcd.service failed/,
  );
  await rejects(
    acts.etcdRestartMember({ inv, member: 'etcd9', invocationBefore: null }),
    Failures.EtcdRefused,
    /etcd9 is not an etcd member .* \(its etcd members: etcd1, etcd2, etcd3\)/,
  );
});

void test('DCS clean: refused while a Patroni runs (its CT up, the unit not inactive), nothing deleted', async () => {
  const c = fakeCluster({ leader: 'etcd2' });
  const deps = c.deps;
  const host = await deps.hostFor(inv.proxmox);
  const running = {
    ...deps,
    hostFor: async () => ({
      ...host,
      exec: async (vmid: number, argv: string[]) =>
        argv[1] === 'is-active' ? { code: 0, stdout: 'active\n', stderr: '' } : host.exec(vmid, argv),
    }),
  } as EtcdOpsDeps;
  const first = inv.nodes.postgres[0]!.hostname;
  await rejects(
    createEtcdOpsActivities(running).dcsCleanDelete({ inv }),
    Failures.EtcdRefused,
    new RegExp(`Patroni runs .* on ${first} \\(service active\\).*nothing was deleted`),
  );
  assert.deepEqual(c.events, []);
  // All stopped (one CT up with the unit inactive, the others' CTs stopped): deleted.
  const r = await createEtcdOpsActivities(deps).dcsCleanDelete({ inv });
  assert.deepEqual(c.events, ['delete']);
  assert.equal(r.deleted, 2);
  assert.equal(r.left, 0);
});
