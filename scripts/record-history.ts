/**
 * (Re)records the histories the replay test (test/workflow/replay.test.ts) replays against the
 * current workflow code: run it when a runbook is released or deliberately changed (with patched()).
 *
 *   npx tsx scripts/record-history.ts        writes test/histories/<workflowId>.json
 *   PGHA_RECORD_LAB=FILE npx tsx scripts/record-history.ts
 *       also runs the real deployCluster and switchover on that deployed lab inventory and saves
 *       their histories (test/histories/lab-<operation>-<cluster>.json)
 *
 * It runs the released runbooks on a throw-away dev server with a worker in this process and the real
 * (smoke) activities. Histories are recorded WITHOUT the payload codec: the codec only wraps payloads
 * on their way to the server and never changes what the workflow code sees, so replay determinism
 * does not depend on it; recorded this way the files are readable, diffable, and need no key in the
 * repository. They hold no secret: inputs carry only references (env:PGHA_HISTORY_SECRET).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { startRunbook } from '../clients/runbook';
import { projectRoot, temporalBinary } from '../temporal.config';
import { workflowsPath } from '../workers/main';
import { approve, lockWorkflowId, progress, searchAttributeKeys } from '../workflows/messages';
import type { RunbookProgress } from '../workflows/messages';
import type { smoke } from '../workflows/smoke';
import type { deployCluster } from '../workflows/deploy-cluster';
import type { failover, HandoffReport, switchover } from '../workflows/switchover';
import type { applyConfig, rollingRestart } from '../workflows/rolling-restart';
import { notDryRun } from '../workflows/dry-run';
import type { reinitReplica } from '../workflows/reinit';
import { inventoryInput } from '../clients/inventory-input';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { deployMocks } from './deploy-mocks';

export const historiesDir = join(projectRoot, 'test', 'histories');
/** What replay and recording share: no codec, failure messages encoded (as in production). */
export const replayDataConverter = {
  failureConverterPath: require.resolve('../converter/failure-converter'),
};

async function waitFor(h: WorkflowHandle, what: string, ok: (p: RunbookProgress) => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const p = await h.query(progress).catch(() => undefined);
    if (p && ok(p)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${h.workflowId}: timed out waiting for ${what}`);
}

async function main(): Promise<void> {
  process.env.PGHA_HISTORY_SECRET = 'recorded-only-as-a-reference';
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalBinary },
      ip: '127.0.0.1',
      searchAttributes: searchAttributeKeys,
    },
    client: { dataConverter: replayDataConverter },
  });
  const taskQueue = 'record-history';
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath,
    activities: createActivities({ stateDir: mkdtempSync(join(tmpdir(), 'pgha-record-')) }),
    dataConverter: replayDataConverter,
  });
  const recorded: WorkflowHandle[] = [];
  const start = (cluster: string, gate: boolean) =>
    startRunbook<typeof smoke>(env.client, {
      workflow: 'smoke',
      args: [
        {
          cluster,
          note: 'recorded by scripts/record-history.ts',
          secretRef: 'env:PGHA_HISTORY_SECRET',
          approvalTimeout: gate ? '1h' : undefined,
        },
      ],
      cluster,
      operation: 'smoke',
      taskQueue,
    });
  const atGate = (h: WorkflowHandle) => waitFor(h, 'the gate', (p) => p.state === 'waiting-approval');

  try {
    await worker.runUntil(async () => {
      // 1. The plain smoke run.
      const plain = await start('history-plain', false);
      await plain.result();
      recorded.push(plain, env.client.workflow.getHandle(lockWorkflowId('history-plain')));
      // 2. Approved at its gate.
      const approved = await start('history-approved', true);
      await atGate(approved);
      await approved.executeUpdate(approve, { args: [{ gate: 'before-verify', approver: 'recorder' }] });
      await approved.result();
      recorded.push(approved);
      // 3. Rejected at its gate.
      const rejected = await start('history-rejected', true);
      await atGate(rejected);
      await rejected.executeUpdate(approve, {
        args: [
          { gate: 'before-verify', approver: 'recorder', decision: 'reject', reason: 'recorded rejection' },
        ],
      });
      await rejected.result().catch(() => undefined);
      recorded.push(rejected);
      // 4. Cancelled at its gate: the write step's compensation runs.
      const cancelled = await start('history-cancelled', true);
      await atGate(cancelled);
      await cancelled.cancel();
      await cancelled.result().catch(() => undefined);
      recorded.push(cancelled);
    });
    // 5. deployCluster on the lab inventory, its activities mocked (replay needs only the workflow's
    //    commands and the recorded results; the real run is test/lab/deploy.test.ts).
    const deployWorker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'record-deploy',
      workflowsPath,
      activities: deployMocks().activities,
      dataConverter: replayDataConverter,
    });
    await deployWorker.runUntil(async () => {
      const inventory = parse(
        readFileSync(join(projectRoot, 'runbooks/clusters/lab.yaml'), 'utf8'),
      ) as Parameters<typeof deployCluster>[0]['inventory'];
      const h = await startRunbook<typeof deployCluster>(env.client, {
        workflow: 'deployCluster',
        args: [{ inventory: { ...inventory, cluster: 'history-deploy' } }],
        cluster: 'history-deploy',
        operation: 'deploy',
        taskQueue: 'record-deploy',
      });
      await h.result();
      recorded.push(h);
    });
    // 6. Optionally, the real runbooks on a deployed lab cluster (real activities, real results).
    const labFile = process.env.PGHA_RECORD_LAB;
    const names = new Map<string, string>();
    if (labFile) {
      const { input, inventory } = await inventoryInput(labFile);
      const labWorker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue: 'record-lab',
        workflowsPath,
        activities: createActivities({ stateDir: mkdtempSync(join(tmpdir(), 'pgha-record-')) }),
        dataConverter: replayDataConverter,
      });
      await labWorker.runUntil(async () => {
        const d = await startRunbook<typeof deployCluster>(env.client, {
          workflow: 'deployCluster',
          args: [{ inventory: input }],
          cluster: inventory.cluster,
          operation: 'deploy',
          taskQueue: 'record-lab',
        });
        await d.result();
        recorded.push(d);
        names.set(d.workflowId, `lab-deploy-${inventory.cluster}`);
        const s = await startRunbook<typeof switchover>(env.client, {
          workflow: 'switchover',
          args: [{ inventory: input }],
          cluster: inventory.cluster,
          operation: 'switchover',
          taskQueue: 'record-lab',
        });
        const switched = (await s.result()) as HandoffReport;
        recorded.push(s);
        names.set(s.workflowId, `lab-switchover-${inventory.cluster}`);
        // The other released runbooks, each on the cluster as the previous one left it.
        const members = inventory.nodes.postgres.map((n) => n.hostname);
        const aReplicaOf = (leader: string) => members.find((m) => m !== leader)!;
        const f = await startRunbook<typeof failover>(env.client, {
          workflow: 'failover',
          // Forced: the leader is healthy (a lab cannot lose it on cue); the old leader rejoins.
          args: [{ inventory: input, candidate: aReplicaOf(switched.to), force: true }],
          cluster: inventory.cluster,
          operation: 'failover',
          taskQueue: 'record-lab',
        });
        await f.result();
        recorded.push(f);
        names.set(f.workflowId, `lab-failover-${inventory.cluster}`);
        const r = await startRunbook<typeof rollingRestart>(env.client, {
          workflow: 'rollingRestart',
          args: [{ inventory: input }],
          cluster: inventory.cluster,
          operation: 'restart',
          taskQueue: 'record-lab',
        });
        const restarted = notDryRun(await r.result());
        recorded.push(r);
        names.set(r.workflowId, `lab-rollingRestart-${inventory.cluster}`);
        const c = await startRunbook<typeof applyConfig>(env.client, {
          workflow: 'applyConfig',
          args: [{ inventory: input, set: { work_mem: '8MB' }, restart: 'in-place' }],
          cluster: inventory.cluster,
          operation: 'config',
          taskQueue: 'record-lab',
        });
        await c.result();
        recorded.push(c);
        names.set(c.workflowId, `lab-applyConfig-${inventory.cluster}`);
        const i = await startRunbook<typeof reinitReplica>(env.client, {
          workflow: 'reinitReplica',
          args: [{ inventory: input, member: aReplicaOf(restarted.leaderAfter) }],
          cluster: inventory.cluster,
          operation: 'reinit',
          taskQueue: 'record-lab',
        });
        await i.result();
        recorded.push(i);
        names.set(i.workflowId, `lab-reinitReplica-${inventory.cluster}`);
      });
    }
    // No secret of the lab may be in a saved history (inputs carry references only): checked here,
    // before a file is written, against the values the references resolve to.
    const secretValues = labFile ? await labSecretValues(labFile) : [];
    for (const h of recorded) {
      const file = join(historiesDir, `${names.get(h.workflowId) ?? h.workflowId}.json`);
      // The format `temporal workflow show --output json` exports (what an operator would attach to a bug).
      const json = execFileSync(
        temporalBinary,
        ['workflow', 'show', '--workflow-id', h.workflowId, '--address', env.address, '--output', 'json'],
        { maxBuffer: 64 * 1024 * 1024 },
      );
      const leaked = secretValues.filter((v) => json.includes(v));
      if (leaked.length) {
        throw new Error(
          `${file}: the history holds ${leaked.length} secret value(s) of the lab: not written`,
        );
      }
      writeFileSync(file, json);
      console.log(`wrote ${file}`);
    }
  } finally {
    await env.teardown();
  }
}

/** The values behind the inventory's `file:` / `env:` secret references (those that resolve here). */
async function labSecretValues(file: string): Promise<string[]> {
  const { inventory } = await inventoryInput(file);
  const values: string[] = [];
  for (const ref of Object.values(inventory.secrets ?? {})) {
    if (typeof ref !== 'string') continue;
    let v: string | undefined;
    if (ref.startsWith('file:')) v = readFileSync(ref.slice('file:'.length), 'utf8').trim();
    else if (ref.startsWith('env:')) v = process.env[ref.slice('env:'.length)]?.trim();
    if (v && v.length >= 8) values.push(v);
  }
  return values;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
