/**
 * The lint rule that keeps workflow code deterministic: a file under workflows/ importing `fs` (or
 * an activity module as a value) fails `eslint`; the same kinds of imports as types, and workflow
 * APIs, pass. Runs the project's real eslint config on temporary files under workflows/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../helpers/local-common';

const run = promisify(execFile);

interface EslintResult {
  filePath: string;
  errorCount: number;
  messages: { ruleId: string | null; message: string }[];
}

void test('eslint fails on node builtins / activity values imported under workflows/, passes clean files', async () => {
  const tag = randomUUID().slice(0, 8);
  const files = {
    fs: join(repoRoot, 'workflows', `lint-probe-fs-${tag}.ts`),
    activities: join(repoRoot, 'workflows', `lint-probe-acts-${tag}.ts`),
    clean: join(repoRoot, 'workflows', `lint-probe-clean-${tag}.ts`),
  };
  writeFileSync(files.fs, "import fs from 'fs';\n\nexport const probe = fs.existsSync;\n");
  writeFileSync(
    files.activities,
    "import { createActivities } from '../activities';\n\nexport const probe = createActivities;\n",
  );
  writeFileSync(
    files.clean,
    [
      "import type { Stats } from 'fs';",
      "import type { Activities } from '../activities';",
      "import { proxyActivities } from '@temporalio/workflow';",
      '',
      "export const acts = proxyActivities<Activities>({ startToCloseTimeout: '1m' });",
      'export type Probe = Stats;',
      '',
    ].join('\n'),
  );
  try {
    const eslint = join(repoRoot, 'node_modules', '.bin', 'eslint');
    const out = await run(eslint, ['--format', 'json', ...Object.values(files)], { cwd: repoRoot }).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    assert.equal(out.code, 1, 'eslint exits 1 when a workflow imports fs');
    const results = JSON.parse(out.stdout) as EslintResult[];
    const of = (f: string) => results.find((r) => r.filePath === f)!;

    const fsMsgs = of(files.fs).messages;
    assert.ok(
      fsMsgs.some(
        (m) => m.ruleId === '@typescript-eslint/no-restricted-imports' && /deterministic/.test(m.message),
      ),
      JSON.stringify(fsMsgs),
    );
    const actMsgs = of(files.activities).messages;
    assert.ok(
      actMsgs.some((m) => /import activities only as types/.test(m.message)),
      JSON.stringify(actMsgs),
    );
    assert.equal(of(files.clean).errorCount, 0, JSON.stringify(of(files.clean).messages));
  } finally {
    for (const f of Object.values(files)) rmSync(f, { force: true });
  }
});

void test('eslint enforces the module boundaries: workers/ never imports clients/, scripts/ never imports test/', async () => {
  const tag = randomUUID().slice(0, 8);
  const files = {
    workerToClient: join(repoRoot, 'workers', `lint-probe-clients-${tag}.ts`),
    scriptToTest: join(repoRoot, 'scripts', `lint-probe-test-${tag}.ts`),
    workerClean: join(repoRoot, 'workers', `lint-probe-clean-${tag}.ts`),
  };
  writeFileSync(
    files.workerToClient,
    "import { describeBusy } from '../clients/runbook';\n\nexport const probe = describeBusy;\n",
  );
  writeFileSync(
    files.scriptToTest,
    "import { repoRoot } from '../test/helpers/local-common';\n\nexport const probe = repoRoot;\n",
  );
  writeFileSync(
    files.workerClean,
    "import { pghaDataConverter } from '../converter/codec';\n\nexport const probe = pghaDataConverter;\n",
  );
  try {
    const eslint = join(repoRoot, 'node_modules', '.bin', 'eslint');
    const out = await run(eslint, ['--format', 'json', ...Object.values(files)], { cwd: repoRoot }).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    assert.equal(out.code, 1, 'eslint exits 1 on a boundary crossed');
    const results = JSON.parse(out.stdout) as EslintResult[];
    const of = (f: string) => results.find((r) => r.filePath === f)!;
    const w = of(files.workerToClient).messages;
    assert.ok(
      w.some(
        (m) =>
          m.ruleId === '@typescript-eslint/no-restricted-imports' &&
          /workers\/ must not import clients\//.test(m.message),
      ),
      JSON.stringify(w),
    );
    const s = of(files.scriptToTest).messages;
    assert.ok(
      s.some(
        (m) =>
          m.ruleId === '@typescript-eslint/no-restricted-imports' &&
          /scripts\/ must not import test\//.test(m.message),
      ),
      JSON.stringify(s),
    );
    assert.equal(of(files.workerClean).errorCount, 0, JSON.stringify(of(files.workerClean).messages));
  } finally {
    for (const f of Object.values(files)) rmSync(f, { force: true });
  }
});
