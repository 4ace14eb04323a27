/**
 * The README's test command (npm test → scripts/test) runs the static checks — tsc --noEmit, eslint .,
 * prettier --check . — in that order BEFORE any test, and stops at the first that fails without
 * running a test. Driven with a stand-in `npx` first on PATH that logs its arguments (and fails for
 * the check named in FAIL_ON), and a stand-in `node` that logs instead of running the suite.
 * And scripts/up exits non-zero when the cluster does not end healthy (deploy failed or status not
 * healthy), after printing the status.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../helpers/local-common';

function run(args: string[], env: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'pgha-test-script-'));
  const log = join(dir, 'log');
  writeFileSync(log, '');
  for (const tool of ['npx', 'node']) {
    const file = join(dir, tool);
    writeFileSync(
      file,
      `#!/usr/bin/env bash\necho "${tool} $*" >> ${log}\n` +
        (tool === 'npx' ? `[ -n "\${FAIL_ON:-}" ] && [ "$1" = "$FAIL_ON" ] && exit 1\n` : '') +
        (tool === 'node'
          ? // a failing run ends as the spec reporter's does: its failing tests, where, the error
            `[ -n "\${PGHA_FAIL_NODE_ON:-}" ] && case "$*" in *"$PGHA_FAIL_NODE_ON"*)\n` +
            `  printf '✔ passes\\n✖ failing tests:\\n\\ntest at x.test.ts:3:5\\n✖ the broken one (9ms)\\n  Error: why\\n    at stack\\n'\n` +
            `  exit 1;; esac\n`
          : '') +
        (tool === 'node'
          ? // a test that leaves a process behind (detached: its own session, reparented to init)
            `[ -n "\${PGHA_LEAVE_BEHIND:-}" ] && { setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> "$PGHA_LEAVE_BEHIND"; }\n`
          : '') +
        'exit 0\n',
    );
    chmodSync(file, 0o755);
  }
  const r = spawnSync('bash', [join(repoRoot, 'scripts/test'), ...args], {
    cwd: repoRoot,
    env: {
      ...process.env,
      PATH: `${dir}:${process.env.PATH}`,
      PGHA_TEST_CHECKS: '',
      PGHA_TEST_TIMEOUT_MS: '',
      PGHA_WORKFLOW_BUNDLE: '',
      PGHA_TEST_BUNDLE: '',
      // its own: the real run's artifacts (the second runner's report among them) are not written over
      PGHA_TEST_ARTIFACTS: dir,
      ...env,
    },
    encoding: 'utf8',
  });
  const all = readFileSync(log, 'utf8').trim().split('\n').filter(Boolean);
  const bundling = /^npx tsx scripts\/bundle\.ts /;
  return {
    code: r.status,
    stderr: r.stderr,
    stdout: r.stdout,
    /** Every call but the two bundle builds (they run side by side, in either order). */
    calls: all.filter((c) => !bundling.test(c)),
    bundles: all.filter((c) => bundling.test(c)).sort(),
    all,
  };
}

/** The two bundles scripts/test builds once per run, before the first test. */
function assertBundledOnce(r: ReturnType<typeof run>): void {
  assert.equal(r.bundles.length, 2, r.all.join('; '));
  assert.match(r.bundles[0]!, /bundles\/test-workflows\.js test\/helpers\/workflows\.ts$/);
  assert.match(r.bundles[1]!, /bundles\/workflows\.js$/);
  const firstNode = r.all.findIndex((c) => c.startsWith('node '));
  assert.ok(
    r.all.every((c, i) => !c.startsWith('npx tsx scripts/bundle.ts') || i < firstNode),
    'bundled before the tests',
  );
}

void test('npm test: tsc, eslint ., prettier --check . first, then the whole suite', () => {
  const r = run([], {});
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.calls.slice(0, 3), ['npx tsc --noEmit -p .', 'npx eslint .', 'npx prettier --check .']);
  // the lab tests and the unit + workflow tests side by side, then the secrets scan after both
  const nodes = r.calls.slice(3);
  assert.equal(nodes.length, 3, r.calls.join('; '));
  assert.ok(nodes.every((c) => c.startsWith('node --import tsx --test --test-concurrency=1 ')));
  const rest = nodes.find((c) => c.includes('test/unit/'));
  const lab = nodes.find((c) => c !== rest && c.includes('test/lab/'));
  assert.ok(lab && !/test\/(unit|workflow)\//.test(lab), `one runner for the lab tests alone: ${lab}`);
  assert.ok(rest && rest.includes('test/workflow/') && !rest.includes('zz-secrets-scan'), rest);
  // a lab test on CTs of its own (marked `// pgha-test: own-lab`) runs beside the main lab's
  const files = (c: string) => c.split(' ').filter((w) => w.endsWith('.test.ts'));
  const ownLab = (f: string) => readFileSync(join(repoRoot, f), 'utf8').startsWith('// pgha-test: own-lab');
  assert.ok(
    files(rest)
      .filter((f) => f.startsWith('test/lab/'))
      .every(ownLab),
    rest,
  );
  assert.ok(!files(lab).some(ownLab), lab);
  assert.ok(files(rest).includes('test/lab/upgrade-major.test.ts'), 'the 17 → 18 lab test on its own CTs');
  assert.match(nodes[2]!, / test\/workflow\/zz-secrets-scan\.test\.ts$/, 'the secrets scan runs last, alone');
  assertBundledOnce(r);
  // PGHA_TEST_SERIAL=1: one runner, every file
  const serial = run([], { PGHA_TEST_SERIAL: '1' });
  assert.equal(serial.code, 0, serial.stderr);
  assert.equal(serial.calls.length, 4);
  assert.match(serial.calls[3]!, /^node --import tsx --test .*test\/unit\/.*test\/workflow\/.*test\/lab\//);
});

void test('a failing runner fails npm test, the other runners still run', () => {
  const r = run([], { PGHA_FAIL_NODE_ON: 'test/lab/' });
  assert.equal(r.code, 1, 'exit 1 when the lab runner fails');
  assert.equal(r.calls.filter((c) => c.startsWith('node ')).length, 3, r.calls.join('; '));
  assert.match(r.all.join('\n'), /zz-secrets-scan/);
  // CI keeps the tail of the output: the failing test, by name and first error line, comes last
  const at = r.stdout.lastIndexOf('== failing lab tests');
  assert.ok(at > r.stdout.lastIndexOf('== unit and workflow tests'), r.stdout);
  const tail = r.stdout.slice(at);
  assert.match(
    tail,
    /== failing lab tests[^\n]*\n[^]*test at x\.test\.ts:3:5\n✖ the broken one \(9ms\)\n {2}Error: why\n/,
  );
  assert.doesNotMatch(tail, /at stack/);
  assert.match(tail, /npm test: lab tests exit 1, /);
});

void test('a workflow bundle that does not build stops npm test before any test runs', () => {
  const r = run(['test/unit/test-script.test.ts'], { FAIL_ON: 'tsx' });
  assert.equal(r.code, 1);
  assert.ok(!r.all.some((c) => c.startsWith('node ')), 'no test ran');
  assert.match(r.stderr, /bundling .* failed/);
});

void test('bundles named by PGHA_WORKFLOW_BUNDLE and PGHA_TEST_BUNDLE are used as they are', () => {
  const r = run(['test/unit/test-script.test.ts'], {
    PGHA_WORKFLOW_BUNDLE: '/b/w.js',
    PGHA_TEST_BUNDLE: '/b/t.js',
  });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.bundles, []);
});

void test('a failing check stops npm test before any test runs, naming it', () => {
  for (const [failOn, ran] of [
    ['tsc', 1],
    ['eslint', 2],
    ['prettier', 3],
  ] as const) {
    const r = run([], { FAIL_ON: failOn });
    assert.equal(r.code, 1, `${failOn}: exit 1`);
    assert.equal(
      r.calls.length,
      ran,
      `${failOn}: the checks after it and the tests did not run: ${r.calls.join('; ')}`,
    );
    assert.ok(!r.calls.some((c) => c.startsWith('node ')), `${failOn}: no test ran`);
    assert.match(r.stderr, new RegExp(`npx ${failOn} .*failed`));
  }
});

void test('a subset (npm test -- FILE) runs just those tests; PGHA_TEST_CHECKS=1 adds the checks', () => {
  const file = 'test/unit/test-script.test.ts';
  const subset = run([file], {});
  assert.equal(subset.code, 0, subset.stderr);
  assertBundledOnce(subset);
  // every test file, test and hook bounded: 20 min unless PGHA_TEST_TIMEOUT_MS says otherwise
  assert.deepEqual(subset.calls, [
    `node --import tsx --test --test-concurrency=1 --test-force-exit --test-timeout=1200000 --test-reporter=spec ${file}`,
  ]);
  const bounded = run([file], { PGHA_TEST_TIMEOUT_MS: '60000' });
  assert.match(bounded.calls[0] ?? '', / --test-timeout=60000 /);
  const checked = run([file], { PGHA_TEST_CHECKS: '1' });
  assert.deepEqual(checked.calls.slice(0, 3), [
    'npx tsc --noEmit -p .',
    'npx eslint .',
    'npx prettier --check .',
  ]);
});

/** scripts/up with stand-ins for bash (bootstrap), npx (pgha, the server) and node (the worker). */
function up(deployRc: number, statusRc: number) {
  const dir = mkdtempSync(join(tmpdir(), 'pgha-up-script-'));
  const log = join(dir, 'log');
  writeFileSync(log, '');
  const stub = (name: string, body: string) => {
    writeFileSync(join(dir, name), `#!/bin/sh\necho "${name} $*" >> ${log}\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  };
  stub('bash', 'exit 0');
  stub(
    'npx',
    [
      `[ "$1 $2" = "pgha deploy" ] && exit ${deployRc}`,
      `[ "$1 $2" = "pgha status" ] && { echo "Verdict: STUB"; exit ${statusRc}; }`,
      'exit 0',
    ].join('\n'),
  );
  // A worker keeps running after it says it is ready (scripts/up checks it is alive)…
  // …and so does the codec server, once it has said where it listens.
  stub(
    'node',
    'case "$*" in *codec-server*) echo "pgha codec server on stand-in";; *) echo "pgha worker: stand-in";; esac; sleep 3; exit 0',
  );
  const r = spawnSync('/bin/bash', [join(repoRoot, 'scripts/up')], {
    cwd: repoRoot,
    env: {
      ...process.env,
      PATH: `${dir}:${process.env.PATH}`,
      PGHA_STATE_DIR: join(dir, 'state'),
      PGHA_CODEC_KEY: 'stand-in',
    },
    encoding: 'utf8',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, calls: readFileSync(log, 'utf8') };
}

void test('scripts/up exits 0 only when the deploy succeeded and the status is healthy; it prints the status either way', () => {
  const healthy = up(0, 0);
  assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
  assert.match(healthy.calls, /npx pgha deploy --cluster/);
  for (const [deployRc, statusRc] of [
    [1, 1],
    [0, 1],
    [0, 2],
    [1, 0],
  ] as const) {
    const r = up(deployRc, statusRc);
    assert.equal(r.code, 1, `deploy ${deployRc}, status ${statusRc}: exit 1\n${r.stdout}${r.stderr}`);
    assert.match(
      r.stdout,
      /Verdict: STUB/,
      `the status is printed even after a failed deploy:\n${r.stdout}${r.stderr}`,
    );
    assert.match(r.stderr, /the cluster is NOT healthy/);
  }
});

void test('what a run leaves behind (a server or worker a killed test never stopped) is stopped when the run ends', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgha-test-leftover-'));
  const pidsFile = join(dir, 'pids');
  // running: /proc/<pid>/stat exists and its state is not Z (a stopped orphan whose reaper has
  // not reaped it yet is a zombie: gone, though `kill -0` still finds it)
  const alive = (pid: number) => {
    try {
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  const r = run(['test/unit/test-script.test.ts'], { PGHA_LEAVE_BEHIND: pidsFile });
  assert.equal(r.code, 0, r.stderr);
  const pids = readFileSync(pidsFile, 'utf8').trim().split('\n').map(Number);
  assert.ok(pids.length >= 1 && pids.every((p) => p > 1), `started: ${pids.join(', ')}`);
  assert.deepEqual(pids.filter(alive), [], 'none left running');
  assert.match(r.stderr, /stopping \d+ process\(es\) this run left behind/);
});
