/**
 * The Patroni upgrade when the leader dies while the cluster is paused, over a fake cluster (each
 * member's REST API answering from a small model; a dead member's calls fail as unreachable):
 *  - patroniLeaderLoss with the leader alive (Patroni says primary, or its REST API is silent but
 *    PostgreSQL answers as a primary): not lost, nothing PATCHed;
 *  - the leader dead: resumed through a member that answers (never the dead one), only the live
 *    members must report it, then the failover waited for (the old leader's key, still in /cluster
 *    until its TTL, is not taken for a leader); each member's version;
 *  - pausing still needs every member: a dead one fails the wait.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createPatroniUpgradeActivities } from '../../activities/upgrade-patroni';
import type { PatroniUpgradeDeps } from '../../activities/upgrade-patroni';
import { PatroniUnreachableError } from '../../activities/patroni';
import type { PatroniActivities, PatroniTarget } from '../../activities/patroni';
import type { PostgresActivities } from '../../activities/postgres';
import type { Inventory } from '../../runbooks/schema';
import { labInventory } from '../helpers/lab-inventory';

const inv: Inventory = labInventory();
const [A, B, C] = inv.nodes.postgres.map((n) => n.hostname) as [string, string, string];

/** A cluster of three: who is dead, who holds the leader key, the pause, what each runs. */
class FakeCluster {
  dead = new Set<string>();
  leaderKey: string | undefined = A;
  pause = true;
  /** Patroni elects this member this many /cluster reads after the resume (0: never). */
  electAfterResume: { member: string; reads: number } | undefined;
  /** PostgreSQL answers SQL on a member whose REST API is silent (Patroni down, PostgreSQL up). */
  sqlPrimary = new Set<string>();
  patches: string[] = [];
  configReads: string[] = [];
  versions: Record<string, string> = { [A]: '3.3.0', [B]: '4.1.5', [C]: '3.3.0' };

  private reach(t: PatroniTarget): void {
    if (this.dead.has(t.member))
      throw new PatroniUnreachableError(t.member, t.url, 'timeout', 'no answer (CT stopped)');
  }
  deps(): PatroniUpgradeDeps {
    const answer = <T>(body: T) => Promise.resolve({ member: '', url: '', status: 200, body });
    const patroni = {
      patroniGetPatroni: (a: { target: PatroniTarget }) => {
        this.reach(a.target);
        const m = a.target.member;
        return answer({
          state: 'running',
          role: m === this.leaderKey ? 'primary' : 'replica',
          pause: this.pause,
          patroni: { version: this.versions[m] },
        });
      },
      patroniGetCluster: (a: { target: PatroniTarget }) => {
        this.reach(a.target);
        if (!this.pause && this.electAfterResume && --this.electAfterResume.reads <= 0) {
          this.leaderKey = this.electAfterResume.member;
          this.electAfterResume = undefined;
        }
        return answer({
          members: [A, B, C].map((name) => ({
            name,
            role: name === this.leaderKey ? 'leader' : 'replica',
            // The dead leader's key and member entry outlive it until their TTL.
            state: 'running',
          })),
        });
      },
      patroniGetConfig: (a: { target: PatroniTarget }) => {
        this.reach(a.target);
        this.configReads.push(a.target.member);
        return answer({ pause: this.pause });
      },
      patroniPatchConfig: (a: { target: PatroniTarget; patch: { pause: boolean } }) => {
        this.reach(a.target);
        this.patches.push(`${a.target.member} pause=${a.patch.pause}`);
        this.pause = a.patch.pause;
        return answer({});
      },
    } as unknown as PatroniActivities;
    const postgres = {
      pgIsInRecovery: (conn: { host: string }) => {
        const m = inv.nodes.postgres.find((n) => n.ip === conn.host)!.hostname;
        if (this.sqlPrimary.has(m)) return Promise.resolve(false);
        return Promise.reject(new Error(`connect ETIMEDOUT ${conn.host}:5432`));
      },
    } as unknown as PostgresActivities;
    return { patroni, postgres, etcd: {} as never, shellFor: () => Promise.reject(new Error('no CT here')) };
  }
}

const run = <T>(fn: () => Promise<T>): Promise<T> => new MockActivityEnvironment().run(fn) as Promise<T>;

void test('the leader alive: not lost, nothing patched (also with its REST API silent but PostgreSQL a primary)', async () => {
  const c = new FakeCluster();
  const acts = createPatroniUpgradeActivities(c.deps());
  assert.deepEqual(await run(() => acts.patroniLeaderLoss({ inv, leader: A })), { lost: false, leader: A });
  c.dead.add(A);
  c.sqlPrimary.add(A);
  assert.deepEqual(await run(() => acts.patroniLeaderLoss({ inv, leader: A })), { lost: false, leader: A });
  assert.deepEqual(c.patches, []);
  assert.equal(c.pause, true);
});

void test('the leader dead while paused: resumed through a live member, the failover waited for, versions reported', async () => {
  const c = new FakeCluster();
  c.dead.add(A);
  c.electAfterResume = { member: B, reads: 3 };
  const acts = createPatroniUpgradeActivities(c.deps());
  const r = await run(() => acts.patroniLeaderLoss({ inv, leader: A, timeoutMs: 20_000 }));
  assert.deepEqual(r, {
    lost: true,
    leader: A,
    newLeader: B,
    resumed: true,
    versions: { [A]: null, [B]: '4.1.5', [C]: '3.3.0' },
  });
  // /config read and patched through a member that answers: the /cluster leader (the dead A, its key
  // not yet expired) is tried first and fails; never patched through it.
  assert.deepEqual(c.patches, [`${B} pause=false`]);
  assert.equal(c.pause, false);
  // Again (a retried attempt): nothing patched twice, the same answer.
  const again = await run(() => acts.patroniLeaderLoss({ inv, leader: A, timeoutMs: 5000 }));
  assert.equal(again.newLeader, B);
  assert.equal(again.resumed, false);
  assert.deepEqual(c.patches, [`${B} pause=false`]);
});

void test('no failover within the bound: a failure that says the cluster was resumed and what to look at', async () => {
  const c = new FakeCluster();
  c.dead.add(A);
  const acts = createPatroniUpgradeActivities(c.deps());
  await assert.rejects(
    run(() => acts.patroniLeaderLoss({ inv, leader: A, timeoutMs: 2500 })),
    new RegExp(`the leader ${A} is gone and the cluster was resumed, but Patroni named no new leader`),
  );
  assert.equal(c.pause, false);
});

void test('pausing still needs every member: a dead one fails the wait', async () => {
  const c = new FakeCluster();
  c.pause = false;
  c.dead.add(C);
  const acts = createPatroniUpgradeActivities(c.deps());
  await assert.rejects(
    run(() => acts.patroniSetPause({ inv, pause: true, timeoutMs: 2000 })),
    new RegExp(`not yet paused: ${C}`),
  );
});
