/**
 * What the Temporal server stores is ciphertext: a smoke run whose input holds a secret reference and
 * whose activities resolve and use the secret, and a run that fails with a message, exported with
 * `temporal workflow show --output json` WITHOUT the codec. Neither the secret, nor the plaintext
 * input, nor the failure message appears — while the same history, decoded with the key, does hold
 * the input (so the check is not vacuous), and the real `temporal` CLI shows it decoded through
 * `pgha codec-server` (the remote codec protocol the Web UI uses).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ApplicationFailure } from '@temporalio/common';
import type { Payload } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import { Patches } from '../../workflows/patches';
import { ENCRYPTED_ENCODING, startCodecServer } from '../../clients/codec';
import { startRunbook } from '../../clients/runbook';
import { temporalBinary } from '../../temporal.config';
import { notDryRun } from '../../workflows/dry-run';
import type { smoke } from '../../workflows/smoke';
import { createTestWorker, startTestServer, testCodec, uniqueId } from '../helpers/temporal';
import { scripted } from '../helpers/workflows';

const run = promisify(execFile);
let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

/** The history as the `temporal` CLI exports it, with no codec. */
async function exportHistory(workflowId: string, raw: boolean): Promise<string> {
  const args = [
    'workflow',
    'show',
    '--workflow-id',
    workflowId,
    '--address',
    env.address,
    '--namespace',
    'default',
  ];
  args.push('--output', 'json', ...(raw ? ['--no-json-shorthand-payloads'] : []));
  const { stdout } = await run(temporalBinary, args, { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

interface Found {
  path: string;
  payload: { metadata?: Record<string, string>; data?: string };
}
/** Every payload ({metadata, data}) in the raw export, with where it sits. */
function payloads(node: unknown, path = ''): Found[] {
  if (Array.isArray(node)) return node.flatMap((v, i) => payloads(v, `${path}[${i}]`));
  if (node === null || typeof node !== 'object') return [];
  const o = node as Record<string, unknown>;
  if (o.metadata && typeof o.metadata === 'object' && 'encoding' in (o.metadata as object)) {
    return [{ path, payload: o as Found['payload'] }];
  }
  return Object.entries(o).flatMap(([k, v]) => payloads(v, `${path}.${k}`));
}
const b64 = (s?: string) => Buffer.from(s ?? '', 'base64');

function assertNoPlaintext(text: string, secrets: string[], what: string) {
  for (const s of secrets) {
    assert.ok(!text.includes(s), `${what} contains ${JSON.stringify(s)}`);
    assert.ok(!text.includes(Buffer.from(s).toString('base64')), `${what} contains ${s} in base64`);
  }
}

void test('history holds neither the secret, the plaintext input, nor failure messages', async () => {
  const secret = `s3cret-${uniqueId('v')}`;
  const secretEnv = `PGHA_TEST_SECRET_${uniqueId('x').replace(/-/g, '_').toUpperCase()}`;
  process.env[secretEnv] = secret;
  const note = `plaintext-note-${uniqueId('n')}`;
  const failMessage = `disk full on pg102 ${uniqueId('m')}`;
  const cluster = uniqueId('codec');
  const taskQueue = uniqueId('tq');
  const real = createActivities({ stateDir: mkdtempSync(join(tmpdir(), 'pgha-state-')) });
  const worker = await createTestWorker(env, {
    taskQueue,
    activities: {
      ...real,
      act: async () => {
        throw ApplicationFailure.nonRetryable(failMessage, 'TestFailure');
      },
      undo: async () => undefined,
    },
  });

  await worker.runUntil(async () => {
    const h = await startRunbook<typeof smoke>(env.client, {
      workflow: 'smoke',
      args: [{ cluster, note, secretRef: `env:${secretEnv}` }],
      cluster,
      operation: 'smoke',
      taskQueue,
    });
    const result = notDryRun(await h.result());
    assert.equal(result.signed, true, 'the activity resolved the secret and used it');

    const failing = await env.client.workflow.start(scripted, {
      taskQueue,
      workflowId: uniqueId('fail'),
      args: [{ cluster: uniqueId('fail'), operation: 'fail', script: [{ step: 'boom' }] }],
    });
    await assert.rejects(failing.result());

    for (const [id, words] of [
      [h.workflowId, [secret, note, secretEnv]],
      [failing.workflowId, [failMessage]],
    ] as const) {
      const shorthand = await exportHistory(id, false);
      const raw = await exportHistory(id, true);
      assert.ok(
        shorthand.includes('WorkflowExecutionCompleted') || shorthand.includes('WorkflowExecutionFailed'),
      );
      assertNoPlaintext(shorthand, [...words], `history of ${id}`);
      assertNoPlaintext(raw, [...words], `raw history of ${id}`);

      // Every payload except the search attributes and the patch markers (written by the SDK's core
      // without the codec; never secret: a patch id of workflows/patches.ts) is ciphertext.
      const found = payloads(JSON.parse(raw));
      const isPatch = (path: string) => /markerRecordedEventAttributes\.details\.patch-data/.test(path);
      for (const f of found.filter((x) => isPatch(x.path))) {
        const marker = b64(f.payload.data).toString('utf8');
        assert.ok(
          Object.values(Patches).some((id) => marker.includes(JSON.stringify(id))),
          `patch marker at ${f.path} holds only a patch id: ${marker}`,
        );
        assertNoPlaintext(marker, [...words], `patch marker at ${f.path}`);
      }
      const data = found.filter((f) => !/searchAttributes/i.test(f.path) && !isPatch(f.path));
      assert.ok(data.length >= 4, `expected payloads in ${id}, found ${data.length}`);
      // The CLI prints payload data in base64: look inside each one, not only at the text.
      for (const f of data) {
        assertNoPlaintext(b64(f.payload.data).toString('latin1'), [...words], `payload at ${f.path}`);
        assert.equal(
          b64(f.payload.metadata?.encoding).toString(),
          ENCRYPTED_ENCODING,
          `payload at ${f.path}`,
        );
      }
      // Positive control: with the key, the history does carry what we looked for.
      const decoded = await testCodec.decode(
        data.map((f): Payload => ({
          metadata: Object.fromEntries(Object.entries(f.payload.metadata ?? {}).map(([k, v]) => [k, b64(v)])),
          data: b64(f.payload.data),
        })),
      );
      const clear = decoded.map((p) => Buffer.from(p.data ?? []).toString()).join('\n');
      assert.ok(
        clear.includes(id === h.workflowId ? note : failMessage),
        `decoded ${id} holds its plaintext`,
      );
      assert.ok(!clear.includes(secret), 'the secret itself never entered history, not even encrypted');
    }
    assert.ok((await exportHistory(failing.workflowId, false)).includes('Encoded failure'));

    // Someone holding the key decodes through `pgha codec-server` (the real temporal CLI as client).
    const { server, url } = await startCodecServer({ codec: testCodec, port: 0 });
    try {
      const show = async (id: string) => {
        const args = ['workflow', 'show', '--workflow-id', id, '--address', env.address, '--output', 'json'];
        const { stdout } = await run(temporalBinary, [...args, '--codec-endpoint', url]);
        const found = payloads(JSON.parse(stdout)).map((f) => f.payload);
        assert.ok(found.every((p) => b64(p.metadata?.encoding).toString() !== ENCRYPTED_ENCODING));
        return found.map((p) => b64(p.data).toString()).join('\n');
      };
      assert.ok((await show(h.workflowId)).includes(note), 'decoded input shown');
      assert.ok((await show(failing.workflowId)).includes(failMessage), 'decoded failure message shown');
    } finally {
      server.close();
    }
  });
});
