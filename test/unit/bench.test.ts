/**
 * bench/switchover.ts rewrites haproxy.cfg, restarts HAProxy and drops a table; bench/failover.ts
 * hard-stops the leader's CT and changes Patroni's timings: each must refuse an inventory that is
 * not a lab's before it reads a secret or opens a connection. Each case is the lab inventory with
 * one field moved off the lab (to loopback only, so even a broken guard could not reach anything
 * else). bench:failover also refuses a bad --runs before anything.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

const root = join(__dirname, '..', '..');
const lab = readFileSync(join(root, 'runbooks', 'clusters', 'lab.yaml'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'pgha-bench-guard-'));

const BENCHES = [
  {
    name: 'bench:switchover',
    file: 'switchover.ts',
    refusal:
      /bench:switchover rewrites haproxy\.cfg and drops tables, so it only runs against a lab inventory/,
  },
  {
    name: 'bench:failover',
    file: 'failover.ts',
    refusal:
      /bench:failover hard-stops the leader's CT and changes Patroni's timings, so it only runs against a lab inventory/,
  },
  {
    name: 'bench:backup',
    file: 'backup.ts',
    refusal:
      /bench:backup hard-stops the leader CT and changes synchronous_standby_names, so it only runs against a lab inventory/,
  },
] as const;

function bench(script: string, inventory: string, args: string[] = []) {
  const file = join(dir, `inv-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, inventory);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'bench', script), ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, PGHA_LAB_INVENTORY: file, BENCH_N: '5' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

after(() => rmSync(dir, { recursive: true, force: true }));

for (const b of BENCHES)
  void describe(`${b.name} refuses an inventory that is not a lab`, () => {
    const cases: [string, string, RegExp][] = [
      [
        'another subnet',
        lab.replace(/^subnet: 10\.213\.50\.0\/24$/m, 'subnet: 127.0.0.0/8'),
        /subnet: the lab only uses 10\.213\.50\.0\/24/,
      ],
      [
        'another Proxmox host',
        lab.replace(/^ {2}host: 10\.213\.50\.1$/m, '  host: 127.0.0.1'),
        /proxmox\.host: the lab's Proxmox stand-in listens on 10\.213\.50\.1/,
      ],
      [
        'a node outside the lab subnet',
        lab.replace('ip: 10.213.50.22 }', 'ip: 127.0.0.22 }'),
        /nodes\.postgres\[1\]\.ip: expected an address in 10\.213\.50\.0\/24/,
      ],
    ];
    for (const [what, inventory, field] of cases) {
      void it(`${what}: exit 1, the field named, nothing done`, () => {
        assert.notEqual(inventory, lab, 'the case changes the inventory');
        const r = bench(b.file, inventory);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, b.refusal);
        assert.match(r.stderr, field);
        assert.equal(r.stdout, '', 'nothing was installed, measured or restored');
      });
    }
  });

void describe('bench:failover refuses a bad --runs before anything', () => {
  for (const v of ['0', '2.5']) {
    void it(`--runs ${v}: exit 1, the flag named, nothing done`, () => {
      const r = bench('failover.ts', lab, ['--runs', v]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /--runs: expected a whole number of runs per series from 1 to 20/);
      assert.equal(r.stdout, '');
    });
  }
});
