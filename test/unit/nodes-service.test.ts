/**
 * activities/nodes/service.ts: a service converges on what it last applied, not on what this
 * attempt changed. The CT is a small in-memory one (files + one systemd unit that loads its files
 * when started, reloaded or restarted), driven through the same argv the lab runs; the tests assert
 * what the unit ends up running, and which systemctl actions it took to get there.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { APPLIED_DIR, ensureService } from '../../activities/nodes/service';
import type { ServiceWant } from '../../activities/nodes/service';
import type { Ct, CtShell } from '../../activities/nodes';

class FakeCt {
  files = new Map<string, string>();
  active = false;
  enabled = false;
  /** The configuration the unit runs with: its files' contents when it last (re)loaded them. */
  loaded: string | undefined;
  actions: string[] = [];
  /** `haproxy -c`-like check: files containing this word fail it. */
  invalidWord = 'INVALID';

  constructor(readonly unitFiles: string[]) {}

  private load() {
    this.loaded = this.unitFiles.map((f) => this.files.get(f)).join('\n');
  }

  exec(argv: string[]): { code: number; stdout: string; stderr: string } {
    const ok = (stdout = '') => ({ code: 0, stdout, stderr: '' });
    const [cmd, ...rest] = argv;
    if (cmd === 'sha256sum' && rest[0] === '--') {
      const lines = rest.slice(1).map((p) => {
        const c = this.files.get(p);
        if (c === undefined) throw new Error(`sha256sum of a missing file ${p}`);
        return `${createHash('sha256').update(c).digest('hex')}  ${p}\n`;
      });
      return ok(lines.join(''));
    }
    if (cmd === 'cat' && rest[0] === '--') {
      const c = this.files.get(rest[1]!);
      return c === undefined ? { code: 1, stdout: '', stderr: 'No such file' } : ok(c);
    }
    if (cmd === 'install' && rest.includes(APPLIED_DIR)) return ok();
    if (cmd === 'haproxy' && rest[0] === '-c') {
      const bad = this.files.get(rest.at(-1)!)?.includes(this.invalidWord);
      return bad ? { code: 1, stdout: '', stderr: '[ALERT] parsing: unknown keyword INVALID' } : ok();
    }
    if (cmd === 'systemctl') {
      const [verb, ...more] = rest;
      const unitName = more.at(-1);
      switch (verb) {
        case 'show':
          return ok(
            `ActiveState=${this.active ? 'active' : 'inactive'}\nUnitFileState=${this.enabled ? 'enabled' : 'disabled'}\nExecMainStartTimestampMonotonic=0\n`,
          );
        case 'daemon-reload':
          this.actions.push('daemon-reload');
          return ok();
        case 'enable':
          this.enabled = true;
          return ok();
        case 'start':
        case 'reload':
        case 'restart':
          this.actions.push(`${verb} ${unitName}`);
          this.active = true;
          this.load();
          return ok();
      }
    }
    throw new Error(`the fake CT does not know ${JSON.stringify(argv)}`);
  }

  shell(): CtShell {
    return {
      exec: (_vmid, argv) => Promise.resolve({ ...this.exec(argv), signal: undefined }),
      push: (_vmid, path, content) => {
        const before = this.files.get(path);
        this.files.set(path, content.toString());
        return Promise.resolve({ changed: before !== content.toString() });
      },
      status: () => Promise.resolve('running' as const),
    };
  }
}

const CFG = '/etc/haproxy/haproxy.cfg';
const UNIT = '/etc/systemd/system/haproxy.service';

function setup() {
  const fake = new FakeCt([CFG, UNIT]);
  const ct: Ct = { sh: fake.shell(), vmid: 200 };
  const want = (filesChanged: boolean, extra: Partial<ServiceWant> = {}): ServiceWant => ({
    unit: 'haproxy',
    files: [CFG, UNIT],
    filesChanged,
    running: true,
    onChange: 'reload',
    validate: ['haproxy', '-c', '-q', '-f', CFG],
    ...extra,
  });
  /** What a step does after it wrote its files. */
  const write = (cfg: string) => {
    const changed = fake.files.get(CFG) !== cfg;
    fake.files.set(CFG, cfg);
    fake.files.set(UNIT, '[Service]\n');
    return changed;
  };
  return { fake, ct, want, write };
}

void describe('ensureService converges on the configuration last applied', () => {
  void it('first run starts the unit with its files; a second run does nothing', async () => {
    const { fake, ct, want, write } = setup();
    assert.deepEqual(await ensureService(ct, want(write('v1'))), ['haproxy enabled', 'haproxy started']);
    assert.equal(fake.loaded, 'v1\n[Service]\n');
    assert.deepEqual(await ensureService(ct, want(write('v1'))), []);
    assert.deepEqual(fake.actions, ['daemon-reload', 'start haproxy']);
  });

  void it('an attempt that wrote new files and died before the reload: the retry reloads', async () => {
    const { fake, ct, want, write } = setup();
    await ensureService(ct, want(write('v1')));
    write('v2'); // ...and the worker died here: no reload
    assert.equal(fake.loaded, 'v1\n[Service]\n');
    // the retry writes the same files: nothing changed in this attempt
    assert.equal(write('v2'), false);
    assert.deepEqual(await ensureService(ct, want(false)), ['haproxy reloaded']);
    assert.equal(fake.loaded, 'v2\n[Service]\n', 'the unit runs the new configuration');
    assert.deepEqual(await ensureService(ct, want(false)), [], 'and a third run does nothing');
    assert.deepEqual(fake.actions, ['daemon-reload', 'start haproxy', 'daemon-reload', 'reload haproxy']);
  });

  void it('a configuration its validator rejects is not applied, and not recorded as applied', async () => {
    const { fake, ct, want, write } = setup();
    await ensureService(ct, want(write('v1')));
    write('v2 INVALID');
    await assert.rejects(ensureService(ct, want(true)), /INVALID/);
    assert.equal(fake.loaded, 'v1\n[Service]\n');
    // fixed by the next run: validated and reloaded then
    write('v3');
    assert.deepEqual(await ensureService(ct, want(true)), ['haproxy reloaded']);
    assert.equal(fake.loaded, 'v3\n[Service]\n');
  });

  void it('a step that died after writing a new unit, before starting it: the retry reloads systemd, then starts', async () => {
    const { fake, ct, want, write } = setup();
    write('v1'); // ...and the worker died here
    assert.deepEqual(await ensureService(ct, want(false)), ['haproxy enabled', 'haproxy started']);
    assert.deepEqual(fake.actions, ['daemon-reload', 'start haproxy']);
    assert.equal(fake.loaded, 'v1\n[Service]\n');
  });

  void it('configure only (running: false): a stopped unit stays stopped and is applied when it starts', async () => {
    const { fake, ct, want, write } = setup();
    assert.deepEqual(await ensureService(ct, want(write('v1'), { running: false })), ['haproxy enabled']);
    assert.equal(fake.active, false);
    assert.equal(fake.files.has(`${APPLIED_DIR}/haproxy.sha256`), false, 'nothing applied yet');
    assert.deepEqual(await ensureService(ct, want(false)), ['haproxy started']);
    assert.equal(fake.loaded, 'v1\n[Service]\n');
  });

  void it('a running unit with no record (deployed before the records) is adopted when nothing changed', async () => {
    const { fake, ct, want, write } = setup();
    write('v1');
    fake.active = true;
    fake.enabled = true;
    fake.loaded = 'v1\n[Service]\n';
    assert.deepEqual(await ensureService(ct, want(false)), []);
    assert.ok(fake.files.has(`${APPLIED_DIR}/haproxy.sha256`), 'adopted: recorded as applied');
    // and from then on a change is applied even by a retry
    write('v2');
    assert.deepEqual(await ensureService(ct, want(false)), ['haproxy reloaded']);
  });

  void it('restart-on-change units (etcd) restart, queued with --no-block', async () => {
    const { fake, ct, want, write } = setup();
    const etcd = (changed: boolean) =>
      want(changed, { onChange: 'restart', noBlock: true, validate: undefined });
    await ensureService(ct, etcd(write('v1')));
    write('v2');
    assert.deepEqual(await ensureService(ct, etcd(false)), ['haproxy restarted']);
    assert.deepEqual(fake.actions, ['daemon-reload', 'start haproxy', 'daemon-reload', 'restart haproxy']);
  });
});
