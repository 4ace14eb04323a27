/**
 * scripts/server.ts (`npm run server`): the dev server starts in the background with pgha's search
 * attributes and the Web UI, reports its status, stops, and keeps its history across a restart
 * (state in <state dir>/temporal.db). Runs on free ports in a temporary state dir.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { searchAttributeNames } from '../../temporal.config';
import { freePort, repoRoot } from '../helpers/local-common';

const exec = promisify(execFile);

void test('npm run server: background start, search attributes, Web UI, status, stop, history survives a restart', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'pgha-server-'));
  const port = await freePort();
  const uiPort = await freePort();
  const env = {
    ...process.env,
    PGHA_STATE_DIR: stateDir,
    PGHA_SERVER_PORT: String(port),
    PGHA_UI_PORT: String(uiPort),
  };
  const server = (...args: string[]) =>
    exec(process.execPath, ['--import', 'tsx', join(repoRoot, 'scripts/server.ts'), ...args], {
      cwd: repoRoot,
      env,
    }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );
  const address = `127.0.0.1:${port}`;
  try {
    const started = await server('start', '--background');
    assert.equal(started.code, 0, started.out);
    assert.match(started.out, new RegExp(`running \\(pid \\d+\\): ${address}`));
    assert.equal((await server('status')).code, 0);
    assert.equal((await server('start', '--background')).code, 0, 'starting again is a no-op');

    let conn = await Connection.connect({ address });
    const attrs = await conn.operatorService.listSearchAttributes({ namespace: 'default' });
    for (const name of searchAttributeNames)
      assert.ok(name in (attrs.customAttributes ?? {}), `${name} registered`);
    assert.equal(
      attrs.customAttributes?.PgOperator,
      temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
      'PgOperator holds every operator who acted: a KeywordList',
    );
    assert.equal((await fetch(`http://127.0.0.1:${uiPort}/`)).status, 200, 'the Web UI answers');

    // A run with no worker stays Running: it must still be there after a restart.
    const client = new Client({ connection: conn });
    const h = await client.workflow.start('smoke', {
      taskQueue: 'nobody-polls',
      workflowId: 'smoke-persisted',
      args: [{ cluster: 'persisted' }],
    });
    await conn.close();

    const stopped = await server('stop');
    assert.equal(stopped.code, 0, stopped.out);
    assert.equal((await server('status')).code, 3, 'status says not running');

    assert.equal((await server('start', '--background')).code, 0);
    conn = await Connection.connect({ address });
    const d = await new Client({ connection: conn }).workflow.getHandle('smoke-persisted').describe();
    assert.equal(d.runId, h.firstExecutionRunId);
    assert.equal(d.status.name, 'RUNNING');
    await conn.close();
  } finally {
    await server('stop');
  }
});
