/**
 * The Patroni upgrade's pieces over a fake node (a small model of the CT's filesystem and systemd:
 * venvs, the venv link, the patroni unit's main PID) and a fake Patroni REST API answering from it:
 *  - versions: compare, the PostgreSQL 18 support warning, the versioned venv path;
 *  - the layout: a real venv directory from an older deploy becomes /opt/patroni-<its version> and
 *    /opt/patroni a link to it; a missing link is restored to the running version;
 *  - the new version's --validate-config: "port in use" lines are tolerated, anything else refuses;
 *  - a switch restarts the service once and waits until /patroni reports the new version; a member
 *    already on it is skipped; a member that does not report the pause is refused;
 *  - a retried switch whose first attempt died right after `systemctl restart` (the intent rode in
 *    the heartbeat) only waits: exactly one restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { CtShell } from '../../activities/nodes';
import { createPatroniUpgradeActivities, planSteps, switchIntentKey } from '../../activities/upgrade-patroni';
import type { PatroniUpgradeDeps, SwitchResult, UpgradeMember } from '../../activities/upgrade-patroni';
import type { PatroniActivities } from '../../activities/patroni';
import { warnings } from '../../activities/status/judge';
import type { PatroniMemberStatus } from '../../activities/status/types';
import { Failures } from '../../runbooks/failures';
import {
  compareVersions,
  patroniSupportWarning,
  pgMajorOf,
  versionedVenv,
} from '../../runbooks/patroni-versions';
import type { Inventory } from '../../runbooks/schema';
import { labInventory } from '../helpers/lab-inventory';

const inv: Inventory = labInventory();
const VENV = '/opt/patroni';

void test('versions: order, the PostgreSQL 18 warning, the venv of a version', () => {
  assert.ok(compareVersions('3.3.0', '4.1.5') < 0);
  assert.ok(compareVersions('4.0.10', '4.0.7') > 0, 'numeric, not lexical');
  assert.equal(compareVersions('4.1.5', '4.1.5'), 0);
  assert.match(
    patroniSupportWarning('3.3.0', 18)!,
    /Patroni 3\.3\.0 does not support PostgreSQL 18 .*4\.0\.7.*pgha upgrade patroni/,
  );
  assert.equal(patroniSupportWarning('4.0.7', 18), undefined);
  assert.equal(patroniSupportWarning('3.3.0', 17), undefined);
  assert.equal(pgMajorOf(180004), 18);
  assert.equal(versionedVenv('/opt/patroni/', '4.1.5'), '/opt/patroni-4.1.5');
});

/** One CT: venv directories (path → version or link), the patroni service, and what ran. */
class FakeNode {
  dirs = new Map<string, string>([[VENV, '3.3.0']]);
  links = new Map<string, string>();
  pid = 100;
  restarts = 0;
  /** The version the running Patroni reports (null: not answering). */
  running: string | null = '3.3.0';
  pause = true;
  validateOutput = [
    "restapi.listen 10.213.50.21:8008 didn't pass validation: Port 8008 is already in use.",
    "postgresql.listen 10.213.50.21,127.0.0.1:5432 didn't pass validation: Port 5432 is already in use.",
  ];
  ran: string[] = [];

  private resolve(p: string): string | undefined {
    const l = this.links.get(p);
    if (l !== undefined) return this.dirs.has(l) ? l : undefined;
    return this.dirs.has(p) ? p : undefined;
  }
  /** Runtime API commands other than `show stat`, in order (once per HAProxy node). */
  haproxy: string[] = [];
  exec(argv: string[], stdin?: string): { code: number; stdout: string; stderr: string } {
    const ok = (stdout = '') => ({ code: 0, stdout, stderr: '' });
    const no = (stderr = 'no') => ({ code: 1, stdout: '', stderr });
    const [cmd, ...rest] = argv;
    this.ran.push(argv.join(' '));
    const bin = /^(.*)\/bin\/(patroni|pip)$/.exec(cmd ?? '');
    if (bin && rest[0] === '--version') {
      const d = this.resolve(bin[1]!);
      const v = d && this.dirs.get(d);
      return v ? ok(`patroni ${v}\n`) : no();
    }
    if (bin && rest[0] === '--validate-config')
      return { code: 1, stdout: '', stderr: this.validateOutput.join('\n') };
    if (bin && bin[2] === 'pip' && rest[0] === 'install') {
      const want = rest.find((x) => x.startsWith('patroni[etcd3]=='))!.split('==')[1]!;
      this.dirs.set(bin[1]!, want);
      return ok();
    }
    switch (cmd) {
      case 'socat': {
        // HAProxy's runtime API: pg103 UP on the read port, DOWN on the write port.
        const command = (stdin ?? '').trim();
        if (command === 'show stat')
          return ok(
            '# pxname,svname,status,check_status,type\npostgres_primary,pg103,DOWN,L7STS,2\npostgres_replicas,pg103,UP,L7OK,2\n',
          );
        this.haproxy.push(command);
        return ok('');
      }
      case 'stat':
        return this.links.has(rest[2]!)
          ? ok('symbolic link\n')
          : this.dirs.has(rest[2]!)
            ? ok('directory\n')
            : no();
      case 'test':
        if (rest[0] === '-x') return this.resolve(rest[1]!.replace(/\/bin\/pip$/, '')) ? ok() : no();
        return this.links.has(rest[1]!) || this.dirs.has(rest[1]!) ? ok() : no();
      case 'readlink':
        return this.links.has(rest[0]!) ? ok(`${this.links.get(rest[0]!)}\n`) : no();
      case 'python3':
        this.dirs.set(rest[2]!, '');
        return ok();
      case 'cat':
        return ok(
          JSON.stringify({
            patroni: ['3.3.0', '4.1.5'].map((version) => ({
              version,
              findLinks: `patroni-${version}`,
              requirements: [`patroni[etcd3]==${version}`],
            })),
          }),
        );
      case 'mv': {
        const [from, to] = rest.slice(-2) as [string, string];
        if (this.links.has(from)) {
          this.links.set(to, this.links.get(from)!);
          this.links.delete(from);
        } else {
          this.dirs.set(to, this.dirs.get(from)!);
          this.dirs.delete(from);
        }
        return ok();
      }
      case 'ln': {
        const [target, path] = rest.slice(-2) as [string, string];
        this.links.set(path, target);
        return ok();
      }
      case 'systemctl':
        if (rest[0] === 'show') return ok(rest[2] === '--property=KillMode' ? 'process\n' : `${this.pid}\n`);
        if (rest[0] === 'daemon-reload') return ok();
        if (rest[0] === 'restart') {
          this.restarts++;
          this.pid++;
          this.running = this.dirs.get(this.resolve(VENV) ?? '') ?? null;
          return ok();
        }
    }
    throw new Error(`the fake CT does not know ${JSON.stringify(argv)}`);
  }
  deps(): PatroniUpgradeDeps {
    const shell: CtShell = {
      exec: (_vmid, argv, opts) =>
        Promise.resolve({ ...this.exec(argv, opts?.stdin?.toString()), signal: undefined }),
      push: () => Promise.resolve({ changed: false }) as ReturnType<CtShell['push']>,
      status: () => Promise.reject(new Error('not used')),
    };
    const patroni = {
      patroniGetPatroni: () =>
        Promise.resolve({
          member: 'pg103',
          url: '',
          status: 200,
          body: this.running
            ? {
                state: 'running',
                role: 'replica',
                pause: this.pause,
                postmaster_start_time: '2026-11-29 08:00:00+00:00',
                patroni: { version: this.running },
                replication: [{ application_name: 'pg103', state: 'streaming' }],
              }
            : null,
        }),
    } as unknown as PatroniActivities;
    return { patroni, postgres: {} as never, etcd: {} as never, shellFor: () => Promise.resolve(shell) };
  }
}

const switchArgs = (to: string) => ({
  inv,
  member: 'pg103',
  to,
  role: 'replica' as const,
  leader: 'pg103', // the fake answers every member's /patroni from this one node
  postmasterBefore: '2026-11-29 08:00:00+00:00',
  timeoutMs: 5000,
});

void test('a switch converges the layout, restarts Patroni once, and is skipped once done', async () => {
  const node = new FakeNode();
  const acts = createPatroniUpgradeActivities(node.deps());
  const env = new MockActivityEnvironment({ attempt: 1 });
  const r = (await env.run(() => acts.patroniSwitchMember(switchArgs('4.1.5')))) as SwitchResult;
  assert.equal(r.action, 'switched');
  assert.equal(r.from, '3.3.0');
  assert.equal(r.postgresRestarted, false);
  assert.equal(node.restarts, 1);
  assert.equal(node.links.get(VENV), '/opt/patroni-4.1.5');
  assert.equal(node.dirs.get('/opt/patroni-3.3.0'), '3.3.0', 'the old venv moved beside, kept for roll-back');
  assert.equal(node.dirs.get('/opt/patroni-4.1.5'), '4.1.5');
  assert.ok(!node.dirs.has(VENV), 'the venv path is a link now');
  // Only the UP server's check is held (a held check counts as UP), and every check is given back.
  const perNode = (c: string) => node.haproxy.filter((x) => x === c).length;
  assert.equal(perNode('disable health postgres_replicas/pg103'), inv.nodes.haproxy.length);
  assert.equal(perNode('disable health postgres_primary/pg103'), 0, 'a DOWN server keeps its check');
  assert.equal(perNode('enable health postgres_replicas/pg103'), inv.nodes.haproxy.length);
  assert.ok(
    node.haproxy.indexOf('enable health postgres_replicas/pg103') >
      node.haproxy.lastIndexOf('disable health postgres_replicas/pg103'),
  );

  const again: SwitchResult = await new MockActivityEnvironment({ attempt: 1 }).run(() =>
    acts.patroniSwitchMember(switchArgs('4.1.5')),
  );
  assert.equal(again.action, 'already');
  assert.equal(node.restarts, 1, 'no second restart');

  // Roll back: the same step to the old version, whose venv is still there.
  const back: SwitchResult = await new MockActivityEnvironment({ attempt: 1 }).run(() =>
    acts.patroniSwitchMember(switchArgs('3.3.0')),
  );
  assert.equal(back.action, 'switched');
  assert.equal(node.links.get(VENV), '/opt/patroni-3.3.0');
  assert.equal(node.running, '3.3.0');
});

void test('refusals before any restart: not paused; the new version rejects the config', async () => {
  const node = new FakeNode();
  node.pause = false;
  const acts = createPatroniUpgradeActivities(node.deps());
  await assert.rejects(
    new MockActivityEnvironment({ attempt: 1 }).run(() => acts.patroniSwitchMember(switchArgs('4.1.5'))),
    (e: unknown) =>
      e instanceof ApplicationFailure &&
      e.type === Failures.PatroniUpgradeRefused &&
      /does not report the pause/.test(e.message),
  );
  node.pause = true;
  node.validateOutput.push('bootstrap.users: this key is no longer supported');
  await assert.rejects(
    new MockActivityEnvironment({ attempt: 1 }).run(() => acts.patroniSwitchMember(switchArgs('4.1.5'))),
    (e: unknown) =>
      e instanceof ApplicationFailure &&
      /Patroni 4\.1\.5 rejects .*bootstrap\.users.*Nothing was switched/.test(e.message) &&
      !/Port 8008/.test(e.message),
  );
  assert.equal(node.restarts, 0);
  assert.notEqual(node.links.get(VENV), '/opt/patroni-4.1.5', 'the link was not switched');
});

void test('a retry after a crash right after `systemctl restart` only waits: one restart', async () => {
  const node = new FakeNode();
  const acts = createPatroniUpgradeActivities(node.deps());
  // Attempt 1 dies just after the restart: its last heartbeat carries the intent (the old PID).
  const a1 = new MockActivityEnvironment({ attempt: 1 });
  let last: unknown;
  a1.on('heartbeat', (d: unknown) => (last = d));
  node.running = '3.3.0';
  const origExec = node.exec.bind(node);
  node.exec = (argv, stdin) => {
    const r = origExec(argv, stdin);
    if (argv.join(' ') === 'systemctl restart patroni') {
      node.running = null; // the new Patroni is not answering yet
      throw new Error('worker died');
    }
    return r;
  };
  await assert.rejects(
    a1.run(() => acts.patroniSwitchMember(switchArgs('4.1.5'))),
    /worker died/,
  );
  assert.equal(node.restarts, 1);
  const intents = (last as { intents?: Record<string, { pid: number }> }).intents;
  assert.equal(intents?.[switchIntentKey('pg103')]?.pid, 100, 'the PID it replaced rode in the heartbeat');

  // Attempt 2: Patroni comes up on the new version a moment later; the retry must not restart again.
  node.exec = origExec;
  setTimeout(() => (node.running = '4.1.5'), 300);
  const a2 = new MockActivityEnvironment({ attempt: 2, heartbeatDetails: last });
  const r = (await a2.run(() => acts.patroniSwitchMember(switchArgs('4.1.5')))) as SwitchResult;
  assert.equal(r.action, 'switched');
  assert.equal(node.restarts, 1, 'exactly one restart');
});

void test('the plan: replicas first, the leader last, what each step does', () => {
  const m = (name: string, role: 'leader' | 'replica', version: string): UpgradeMember => ({
    name,
    role,
    version,
    postmasterStartTime: null,
    killMode: 'process',
    action: version === '4.1.5' ? 'already' : 'upgrade',
  });
  const steps = planSteps(inv, '4.1.5', [
    m('pg103', 'replica', '3.3.0'),
    m('pg104', 'replica', '4.1.5'),
    m('pg102', 'leader', '3.3.0'),
  ]);
  assert.match(steps[0]!, /install Patroni 4\.1\.5 into \/opt\/patroni-4\.1\.5 on pg103, pg102/);
  assert.match(steps[1]!, /pause/);
  assert.match(steps[2]!, /^pg103 \(replica, Patroni 3\.3\.0\)/);
  assert.match(steps[3]!, /^pg102 \(leader, Patroni 3\.3\.0\).*the running primary/);
  assert.match(steps.at(-1)!, /resume/);
  assert.deepEqual(planSteps(inv, '4.1.5', [m('pg103', 'replica', '4.1.5')]), [
    'nothing to do: every member already runs Patroni 4.1.5',
  ]);
});

void test('pgha status warns (verdict unchanged) when a member runs Patroni 3.3 with PostgreSQL 18', () => {
  const member = (name: string, patroniVersion: string, serverVersion: number) =>
    ({ name, patroniVersion, serverVersion }) as PatroniMemberStatus;
  const status = {
    patroni: {
      members: [
        member('pg102', '3.3.0', 180004),
        member('pg103', '4.1.5', 180004),
        member('pg104', '3.3.0', 170006),
      ],
    },
  } as Parameters<typeof warnings>[0];
  const w = warnings(status);
  assert.equal(w.length, 1);
  assert.match(w[0]!, /^pg102: Patroni 3\.3\.0 does not support PostgreSQL 18 .*pgha upgrade patroni/);
});
