/**
 * The node steps (activities/nodes/) on the lab's first HAProxy CT of PGHA_LAB_INVENTORY (default
 * runbooks/clusters/lab.yaml), checked from outside pgha (lxc-attach, /proc, a TCP connect):
 *  1. a step that wrote its files and died before the reload (afterFiles throws) is retried: the
 *     retry finds the files unchanged but not applied, checks and reloads, and the new config is
 *     live (HAProxy listens on the new stats port); a third run reloads nothing;
 *  2. a haproxy.cfg that `haproxy -c` rejects never replaces the live file;
 *  3. a cancelled step's command is gone from the CT.
 * Run it on a side lab whose CTs only need to exist (the step installs HAProxy from the offline dir).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createNodeActivities } from '../../activities/nodes';
import type { CtShell, NodeDeps } from '../../activities/nodes';
import { haproxyCheck } from '../../activities/nodes/haproxy';
import { checkedPush, run } from '../../activities/nodes/shell';
import { ProxmoxHost } from '../../activities/proxmox';
import { HAPROXY_CFG_PATH, renderNodeFiles } from '../../activities/render';
import { loadInventory, resolveClusterSecrets } from '../../runbooks/inventory';
import type { Inventory } from '../../runbooks/schema';
import { labNotUpReason } from '../../lab/testing';
import { inCt } from '../helpers/lab-direct';
import { repoRoot } from '../helpers/local-common';

const skip = process.env.CI ? false : labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');

let inv: Inventory;
let host: ProxmoxHost;
let ha: Inventory['nodes']['haproxy'][number];

/** An activity run the way the worker runs it (activity context: heartbeats, cancellation). */
function activities(extra: Partial<NodeDeps> = {}) {
  return createNodeActivities({ shellFor: () => Promise.resolve<CtShell>(host), ...extra });
}
const inActivity = async <R>(fn: () => Promise<R>): Promise<R> =>
  (await new MockActivityEnvironment().run(fn)) as R;

/** Whether something accepts TCP connections on ip:port (HAProxy's stats listener). */
function listens(ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.connect(port, ip);
  });
}

async function eventuallyListens(ip: string, port: number, want: boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while ((await listens(ip, port)) !== want) {
    assert.ok(Date.now() < deadline, `${ip}:${port} ${want ? 'never listened' : 'still listens'}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const sha = (vmid: number, path: string) => inCt(vmid, ['sha256sum', path]).split(' ')[0];

before(async () => {
  if (skip) return;
  execFileSync(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'clients/pgha.ts'), 'secrets', 'init', '--cluster', LAB],
    {
      cwd: repoRoot,
      stdio: 'ignore',
      timeout: 120_000,
    },
  );
  inv = await loadInventory(LAB);
  ha = inv.nodes.haproxy[0]!;
  host = await ProxmoxHost.fromInventory(inv.proxmox);
});
after(() => host?.close());

void describe('node steps on the lab', { skip, timeout: 900_000 }, () => {
  void it('a step that died between writing haproxy.cfg and the reload: the retry reloads', async () => {
    const args = { inv, hostname: ha.hostname };
    await inActivity(() => activities().installHaproxy(args)); // as the inventory says, whatever was there
    const oldPort = inv.ports.haproxyStats;
    const newPort = oldPort + 1;
    await eventuallyListens(ha.ip, oldPort, true);
    const changed: Inventory = { ...inv, ports: { ...inv.ports, haproxyStats: newPort } };

    const died = new Error('worker died after writing the files');
    const dying = activities({
      afterFiles: () => {
        throw died;
      },
    });
    await assert.rejects(
      inActivity(() => dying.installHaproxy({ inv: changed, hostname: ha.hostname })),
      died,
    );
    assert.match(
      inCt(ha.vmid, ['cat', HAPROXY_CFG_PATH]),
      new RegExp(`:${newPort}\\b`),
      'the files were written',
    );
    assert.equal(await listens(ha.ip, newPort), false, 'and not applied');

    const retry = await inActivity(() =>
      activities().installHaproxy({ inv: changed, hostname: ha.hostname }),
    );
    assert.deepEqual(retry.files, [], 'the retry found the files as wanted');
    assert.deepEqual(retry.services, ['haproxy reloaded'], 'and still applied them');
    await eventuallyListens(ha.ip, newPort, true);
    await eventuallyListens(ha.ip, oldPort, false);

    const again = await inActivity(() =>
      activities().installHaproxy({ inv: changed, hostname: ha.hostname }),
    );
    assert.deepEqual([again.files, again.services], [[], []], 'converged: nothing to do');

    const back = await inActivity(() => activities().installHaproxy(args));
    assert.deepEqual(back.services, ['haproxy reloaded']);
    await eventuallyListens(ha.ip, oldPort, true);
  });

  void it('the same without a hook: the files of a dead attempt are in place, the step still applies them', async () => {
    const args = { inv, hostname: ha.hostname };
    await inActivity(() => activities().installHaproxy(args));
    const newPort = inv.ports.haproxyStats + 2;
    const changed: Inventory = { ...inv, ports: { ...inv.ports, haproxyStats: newPort } };
    // what the dead attempt did: the rendered files written, as the step writes them
    for (const f of renderNodeFiles(changed, 'haproxy', ha, await resolveClusterSecrets(changed))) {
      await host.push(ha.vmid, f.path, f.content, { mode: f.mode, owner: f.owner, group: f.group });
    }
    assert.equal(await listens(ha.ip, newPort), false);
    const retry = await inActivity(() =>
      activities().installHaproxy({ inv: changed, hostname: ha.hostname }),
    );
    assert.deepEqual([retry.files, retry.services], [[], ['haproxy reloaded']]);
    await eventuallyListens(ha.ip, newPort, true);
    await inActivity(() => activities().installHaproxy(args));
    await eventuallyListens(ha.ip, inv.ports.haproxyStats, true);
  });

  void it('a haproxy.cfg that haproxy -c rejects never replaces the live file', async () => {
    const before = sha(ha.vmid, HAPROXY_CFG_PATH);
    const ct = { sh: host, vmid: ha.vmid };
    const bad = {
      path: HAPROXY_CFG_PATH,
      content: 'frontend x\n  bind :notaport\n',
      mode: 0o644,
      owner: 'root',
      group: 'root',
    };
    await assert.rejects(
      inActivity(() => checkedPush(ct, bad, haproxyCheck)),
      (err: Error) => {
        assert.match(err.message, /haproxy -c -f \/etc\/haproxy\/\.haproxy\.cfg\.pgha-candidate/);
        assert.match(err.message, /rejected by this check: the live file was left unchanged/);
        assert.match(err.message, /notaport/);
        return true;
      },
    );
    assert.equal(sha(ha.vmid, HAPROXY_CFG_PATH), before, 'the live file changed');
    assert.doesNotMatch(
      inCt(ha.vmid, ['ls', '-a', '/etc/haproxy']),
      /pgha-candidate/,
      'a candidate was left behind',
    );
    await eventuallyListens(ha.ip, inv.ports.haproxyStats, true);
  });

  void it('a cancelled step kills its command in the CT and ends as cancelled', async () => {
    const env = new MockActivityEnvironment();
    const ct = { sh: host, vmid: ha.vmid };
    const p = env.run(() => run(ct, ['sh', '-c', 'sleep 293.5 & sleep 294.5; wait'], 600_000));
    const running = () => inCt(ha.vmid, ['sh', '-c', 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " "']);
    const deadline = Date.now() + 10_000;
    while (!running().includes('294.5')) {
      assert.ok(Date.now() < deadline, 'the command never started');
      await new Promise((r) => setTimeout(r, 200));
    }
    env.cancel();
    await assert.rejects(p, /cancelled.*killed it in CT/);
    assert.doesNotMatch(running(), /29[34]\.5/, 'the cancelled command still runs in the CT');

    // through the activity binding: a cancelled step ends as cancelled, not as failed
    const env2 = new MockActivityEnvironment();
    const slow: CtShell = {
      // every command of the step becomes a long one, so the cancel lands while it runs
      exec: (vmid, _argv, opts) => host.exec(vmid, ['sleep', '292.5'], opts),
      push: (...a) => host.push(...a),
      status: (v) => host.status(v),
    };
    const step = env2.run(() =>
      activities({ shellFor: () => Promise.resolve(slow) }).preflightNode({
        inv,
        role: 'haproxy',
        hostname: ha.hostname,
      }),
    );
    const started = Date.now() + 10_000;
    while (!running().includes('292.5')) {
      assert.ok(Date.now() < started, 'the step never ran its command');
      await new Promise((r) => setTimeout(r, 200));
    }
    env2.cancel();
    await assert.rejects(step, CancelledFailure);
    assert.doesNotMatch(running(), /292\.5/, "the cancelled step's command still runs in the CT");
  });
});
