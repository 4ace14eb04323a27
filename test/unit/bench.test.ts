/**
 * bench/switchover.ts rewrites haproxy.cfg, restarts HAProxy and drops a table: it must refuse an
 * inventory that is not a lab's before it reads a secret or opens a connection. Each case is the lab
 * inventory with one field moved off the lab (to loopback only, so even a broken guard could not
 * reach anything else).
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

function bench(inventory: string) {
  const file = join(dir, `inv-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, inventory);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'bench', 'switchover.ts')], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, PGHA_LAB_INVENTORY: file, BENCH_N: '5' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

void describe('bench:switchover refuses an inventory that is not a lab', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

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
      const r = bench(inventory);
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /bench:switchover rewrites haproxy\.cfg and drops tables, so it only runs against a lab inventory/,
      );
      assert.match(r.stderr, field);
      assert.equal(r.stdout, '', 'nothing was installed, measured or restored');
    });
  }
});
