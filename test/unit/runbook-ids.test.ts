/** Workflow ids of runbooks and the "cluster busy" message (pure helpers). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeBusy } from '../../clients/runbook';
import { lockWorkflowId, runbookWorkflowId } from '../../workflows/messages';

void test('runbook ids are <operation>-<cluster>[-<suffix>]; bad parts are refused with the field named', () => {
  assert.equal(runbookWorkflowId('deploy', 'lab'), 'deploy-lab');
  assert.equal(runbookWorkflowId('backup', 'pve-seed', '2026-11-26'), 'backup-pve-seed-2026-11-26');
  assert.equal(lockWorkflowId('lab'), 'pgha-lock-lab');
  assert.throws(
    () => runbookWorkflowId('deploy', "lab' OR 1=1"),
    /cluster "lab' OR 1=1" is not a valid id part/,
  );
  assert.throws(() => runbookWorkflowId('', 'lab'), /operation "" is not a valid id part/);
  assert.throws(() => runbookWorkflowId('backup', 'lab', 'a b'), /suffix "a b"/);
});

void test('the busy message names the running operation and what to do', () => {
  const msg = describeBusy('lab', {
    workflowId: 'deploy-lab',
    operation: 'deploy',
    step: 'etcd',
    startTime: new Date('2026-11-26T09:00:00Z'),
  });
  assert.equal(
    msg,
    'cluster lab is busy: deploy-lab (operation deploy, at step etcd, started 2026-11-26T09:00:00.000Z) is running. ' +
      'Follow it with `pgha watch deploy-lab`, or stop it with `pgha cancel deploy-lab`',
  );
});
