/**
 * The bad-inventory corpus (test/fixtures/bad-inventories/): each file is base.yaml with ONE defect
 * (cases.tsv names the field the error must name and the class of defect). Every file is run through
 * the loader and through the real CLI (`pgha validate`, text and --json, as child processes: one
 * process validates the whole corpus, a few single files check the exit code on their own), and
 * must be: rejected, exit 1, the field named, --json parseable, and the planted fake secret (in the
 * files and the environment variable the base refers to, and pasted into some of the cases) never
 * in the output.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  checkInventoryFile,
  checkInventoryText,
  formatIssues,
  type InventoryIssue,
} from '../../runbooks/inventory';

const root = join(__dirname, '..', '..');
const dir = join(root, 'test', 'fixtures', 'bad-inventories');
const pgha = join(root, 'bin', 'pgha.js');
const run = promisify(execFile);

/** A character that would break a line of a message: C0, DEL, C1, U+2028/2029. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** The fake secret planted in secrets/*, in the env var the base refers to, and pasted into cases. */
const PLANTED = 'PLANTED-pw-4e1f7c';
/** The number pasted where a password belongs (secret-number-password.yaml). */
const PLANTED_NUMBER = '4815162342';
const env = { ...process.env, PGHA_CORPUS_RESTAPI_PASSWORD: PLANTED };

interface Case {
  file: string;
  field: string;
  what: string;
}

async function cases(): Promise<Case[]> {
  const text = await readFile(join(dir, 'cases.tsv'), 'utf8');
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [file, field, what] = l.split('\t');
      return { file: file!, field: field!, what: what! };
    });
}

/** Whether an issue names the field: its path is the field or lies under it ('' is the document). */
const names = (path: string, field: string) => {
  const p = path || '(document)';
  return (
    p === field ||
    p.startsWith(`${field}.`) ||
    p.startsWith(`${field}[`) ||
    (field === '(line' && p.startsWith('(line'))
  );
};

function assertNoSecret(text: string, where: string): void {
  assert.ok(!text.includes(PLANTED), `${where}: the planted secret is in the output`);
  assert.ok(!text.includes(PLANTED_NUMBER), `${where}: the planted numeric secret is in the output`);
}

const cli = (args: string[]) =>
  run(process.execPath, [pgha, ...args], {
    cwd: dir,
    env,
    timeout: 120_000,
    maxBuffer: 64 * 1024 * 1024,
  }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );

interface JsonReport {
  file: string;
  valid: boolean;
  issues: InventoryIssue[];
}

void describe('the bad-inventory corpus', () => {
  void it('has at least 80 cases, one file each, covering every class of defect; the base is valid', async () => {
    const all = await cases();
    assert.ok(all.length >= 80, `${all.length} cases`);
    assert.equal(new Set(all.map((c) => c.file)).size, all.length, 'one file per case');
    const classes = new Set(all.map((c) => c.what));
    for (const c of [
      'control character',
      'path',
      'unix user',
      'role',
      'encoding',
      'version',
      'patroni timing',
      'haproxy duration',
      'proxmox host',
      'allowed networks',
      'url',
      'secret reference',
      'secret value',
      'yaml',
    ])
      assert.ok(classes.has(c), `a case of class ${c}`);
    // The base passes: each case differs from it by its one defect.
    const base = await checkInventoryFile(join(dir, 'base.yaml'));
    // (Its one warning: Patroni 3.3.0, as the seed, does not support PostgreSQL 18.)
    assert.deepEqual(
      base.issues.map((i) => `${i.severity} ${i.path}`),
      ['warning versions.patroni'],
    );
    assert.ok(base.inventory);
  });

  void it('the loader rejects every case, naming the field, never quoting the planted secret', async () => {
    for (const c of await cases()) {
      const r = await checkInventoryFile(join(dir, c.file));
      assert.equal(r.inventory, undefined, `${c.file}: rejected`);
      const errors = r.issues.filter((i) => i.severity === 'error');
      assert.ok(
        errors.some((i) => names(i.path, c.field)),
        `${c.file}: an error names ${c.field}; got ${JSON.stringify(errors.map((i) => i.path))}`,
      );
      for (const i of errors) {
        assert.ok(i.found && i.expected && i.fix, `${c.file}: found, expected and fix in every issue`);
        for (const part of [i.path, i.found, i.expected, i.fix])
          assert.ok(!CONTROL.test(part), `${c.file}: no control character in a message`);
      }
      assertNoSecret(formatIssues(r).join('\n') + JSON.stringify(r.issues), c.file);
    }
  });

  void it('pgha validate (one process, every file): exit 1, each file reported with its field, no secret', async () => {
    const all = await cases();
    const out = await cli(['validate', ...all.map((c) => c.file)]);
    assert.equal(out.code, 1);
    assertNoSecret(out.stdout + out.stderr, 'text output');
    // Each file's report starts with its absolute path at the start of a line.
    const sections = new Map<string, string>();
    for (const block of out.stderr.split(/^(?=\/)/m)) {
      const head = /^(\S+\.yaml): \d+ errors?$/m.exec(block);
      if (head) sections.set(head[1]!, block);
    }
    for (const c of all) {
      const s = sections.get(join(dir, c.file));
      assert.ok(s, `${c.file}: reported as invalid`);
      const field = c.field === '(line' ? '(line' : c.field;
      assert.ok(s.includes(`  ${field}`), `${c.file}: names ${field}:\n${s}`);
    }
  });

  void it('pgha validate --json (one process, every file): JSON, exit 1, every file invalid with its field, no secret', async () => {
    const all = await cases();
    const out = await cli(['validate', '--json', ...all.map((c) => c.file)]);
    assert.equal(out.code, 1);
    assert.equal(out.stderr, '');
    assertNoSecret(out.stdout, 'JSON output');
    const reports = JSON.parse(out.stdout) as JsonReport[];
    assert.equal(reports.length, all.length);
    all.forEach((c, i) => {
      const r = reports[i]!;
      assert.equal(r.file, join(dir, c.file));
      assert.equal(r.valid, false, c.file);
      assert.ok(
        r.issues.some((x) => x.severity === 'error' && names(x.path, c.field)),
        `${c.file}: names ${c.field}`,
      );
    });
  });

  void it('single files: exit 1 and JSON on its own, also for a missing file, a directory and no file at all', async () => {
    for (const args of [
      ['--cluster', 'secret-literal-password.yaml'],
      ['--cluster', 'yaml-unterminated-quote-on-secret.yaml'],
      ['--cluster', 'no-such-inventory.yaml'],
      ['--cluster', 'secrets'],
      [],
    ]) {
      const out = await cli(['validate', '--json', ...args]);
      assert.equal(out.code, 1, args.join(' '));
      assertNoSecret(out.stdout + out.stderr, args.join(' '));
      const r = JSON.parse(out.stdout) as JsonReport;
      assert.equal(r.valid, false);
      assert.ok(r.issues.length > 0 && r.issues.every((i) => i.fix.length > 0));
    }
    const text = await cli(['validate', '--cluster', 'secret-number-password.yaml']);
    assert.equal(text.code, 1);
    assert.match(
      text.stderr,
      /secrets\.replicationPassword \(line \d+, column \d+\): found a number \(not shown\)/,
    );
    assertNoSecret(text.stdout + text.stderr, 'text, one file');
    const ok = await cli(['validate', '--json', '--cluster', 'base.yaml']);
    assert.equal(ok.code, 0, ok.stdout);
    assert.equal((JSON.parse(ok.stdout) as JsonReport).valid, true);
  });
});

void describe('near misses stay valid (the checks refuse the defect, not its neighbours)', () => {
  /** base.yaml with one line replaced. */
  const variant = async (old: string, next: string) => {
    const text = await readFile(join(dir, 'base.yaml'), 'utf8');
    assert.equal(text.split(old).length, 2, `one "${old}" in base.yaml`);
    return checkInventoryText(text.replace(old, next), join(dir, 'variant.yaml'));
  };
  void it('each accepted, with no error', async () => {
    for (const [old, next] of [
      ['  encoding: UTF8', '  encoding: utf-8'],
      ['  encoding: UTF8', '  encoding: LATIN1'],
      ['  dataDir: /var/lib/pgsql/18/data', '  dataDir: /srv/pgsql/18/data'],
      ['  dataDir: /var/lib/pgsql/18/data', '  dataDir: /tmp/pgha-render-9pOna0/data-18'],
      ['  home: /var/lib/pgsql', '  home: /home/postgres'],
      ['  host: 10.213.50.1', '  host: pve1.example.org'],
      ['  osUser: postgres', '  osUser: _postgres'],
      ['  superuser: postgres', '  superuser: Admin_1'],
      ["  patroni: '3.3.0'", "  patroni: '4.0.7'"],
      ["  etcd: '3.4'", "  etcd: '3.5.13'"],
      ["  etcd: '3.4'", "  etcd: '3.4'\n  haproxy: '2.6.12'"],
      ['  timeoutClient: 30m', '  timeoutClient: 24d'],
      ['  checkInter: 1s', '  checkInter: 100us'],
      [
        "  superuserPassword: 'file:secrets/superuser-password'",
        "  superuserPassword: 'file:../bad-inventories/secrets/superuser-password'",
      ],
      [
        "  superuserPassword: 'file:secrets/superuser-password'",
        "  superuserPassword: 'env:PG_SU_PASSWORD_2'",
      ],
      [
        '  allowedNetworks: [10.213.50.0/24]',
        '  allowedNetworks: [10.213.50.0/25, 10.213.50.0/26, 10.213.50.32/27]',
      ],
      ['  allowedNetworks: [10.213.50.0/24]', '  allowedNetworks: [10.0.0.0/8]'],
      ['  binDir: /usr/bin', '  binDir: /usr/local/bin'],
      ["    hot_standby: 'on'", '    application_name: "it\'s a name with spaces"'],
      ['  clusterToken: patroni-cluster-token', '  clusterToken: lab-2026.11_token'],
    ]) {
      const r = await variant(old!, next!);
      assert.deepEqual(
        r.issues.filter((i) => i.severity === 'error'),
        [],
        `${next} is valid`,
      );
      assert.ok(r.inventory, next);
    }
  });
});
