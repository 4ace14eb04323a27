/**
 * bench/upgrade.ts restarts every PostgreSQL member and writes a table: it must refuse an inventory
 * that is not a lab's before it reads a secret or opens a connection (the case moves one field to
 * loopback only, so even a broken guard could not reach anything else).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

const root = join(__dirname, '..', '..');
const lab = readFileSync(join(root, 'runbooks', 'clusters', 'lab.yaml'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'pgha-bench-upgrade-guard-'));
after(() => rmSync(dir, { recursive: true, force: true }));

void test('bench:upgrade refuses an inventory outside the lab: exit 1, the field named, nothing done', () => {
  const inventory = lab.replace(/^subnet: 10\.213\.50\.0\/24$/m, 'subnet: 127.0.0.0/8');
  assert.notEqual(inventory, lab, 'the case changes the inventory');
  const file = join(dir, 'inv.yaml');
  writeFileSync(file, inventory);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'bench', 'upgrade.ts')], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, PGHA_LAB_INVENTORY: file },
  });
  assert.equal(r.status, 1, r.stderr);
  assert.match(
    r.stderr,
    /bench:upgrade restarts every PostgreSQL member and writes a table, so it only runs against a lab inventory/,
  );
  assert.match(r.stderr, /subnet: the lab only uses 10\.213\.50\.0\/24/);
  assert.equal(r.stdout, '', 'nothing was measured');
});
