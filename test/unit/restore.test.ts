/**
 * The restore runbook's pure parts:
 * - Patroni's custom bootstrap for a restore (activities/render/patroni.ts): golden patroni.yml of
 *   the lab's first member restoring to a time (UPDATE_GOLDEN=1 rewrites it), and what it must hold:
 *   the command a rename of the staged copy (Python's shlex splits it back into argv), WAL only from
 *   the member's own staging directory, promote at the target, no restore without the option;
 * - the recovery target flags (runbooks/restore-target.ts): one at most, each of its grammar.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadInventory } from '../../runbooks/inventory';
import type { ClusterSecrets, Inventory } from '../../runbooks/schema';
import { RESTORE_METHOD, renderPatroniYml, restoreStaging } from '../../activities/render';
import { lsnValue, parseRestoreTarget, recoveryTargetSettings } from '../../runbooks/restore-target';
import { assertGoldenDir } from '../helpers/golden';

const root = join(__dirname, '..', '..');
const lab = (): Promise<Inventory> => loadInventory(join(root, 'runbooks', 'clusters', 'lab.yaml'));
const FAKE: ClusterSecrets = {
  superuserPassword: '<superuser-password>',
  replicationPassword: '<replication-password>',
  restApiPassword: '<restapi-password>',
  haproxyStatsPassword: '<haproxy-stats-password>',
};
const TARGET = { kind: 'time', time: '2026-11-29T23:05:00.250Z' } as const;

interface Boot {
  method?: string;
  pgha_restore?: {
    command: string;
    no_params: boolean;
    keep_existing_recovery_conf: boolean;
    recovery_conf: Record<string, string>;
  };
}

void describe("restore: Patroni's custom bootstrap", () => {
  void it('lab: patroni.yml of the restoring member matches test/golden/restore/ (UPDATE_GOLDEN=1 to accept)', async () => {
    const inv = await lab();
    const f = renderPatroniYml(inv, inv.nodes.postgres[0]!, FAKE, {
      tag: 'restore-lab-4f2a1c',
      target: TARGET,
    });
    await assertGoldenDir(join(root, 'test', 'golden', 'restore'), new Map([[`pg1${f.path}`, f.content]]));
  });

  void it('moves the staged copy in, recovers from the staged WAL only, promotes at the target', async () => {
    const inv = await lab();
    const st = restoreStaging(inv, 'restore-lab-4f2a1c');
    const y = parse(
      renderPatroniYml(inv, inv.nodes.postgres[0]!, FAKE, { tag: 'restore-lab-4f2a1c', target: TARGET })
        .content,
    ) as { bootstrap: Boot };
    const b = y.bootstrap;
    assert.equal(b.method, RESTORE_METHOD);
    const m = b.pgha_restore!;
    assert.equal(m.no_params, true);
    assert.equal(m.keep_existing_recovery_conf, false);
    // Patroni splits the command with shlex (POSIX): the same argv comes back
    const argv = JSON.parse(
      execFileSync(
        'python3',
        ['-c', 'import json,shlex,sys; print(json.dumps(shlex.split(sys.argv[1])))', m.command],
        {
          encoding: 'utf8',
        },
      ),
    ) as string[];
    assert.deepEqual(argv.slice(0, 2), ['/bin/sh', '-c']);
    assert.deepEqual(argv.slice(3), [RESTORE_METHOD, inv.postgresql.dataDir, st.data]);
    assert.ok(
      st.dir.startsWith(inv.postgresql.dataDir.replace(/\/[^/]+$/, '/')),
      'staging beside the data directory',
    );
    assert.equal(m.recovery_conf.restore_command, `cp ${st.wal}/%f "%p"`);
    assert.equal(m.recovery_conf.recovery_target_action, 'promote');
    assert.equal(m.recovery_conf.recovery_target_timeline, 'latest');
    assert.equal(m.recovery_conf.recovery_target_time, '2026-11-29 23:05:00.250+00');
  });

  void it('without a restore: no custom method (initdb, as deploy renders it)', async () => {
    const inv = await lab();
    const y = parse(renderPatroniYml(inv, inv.nodes.postgres[0]!, FAKE).content) as { bootstrap: Boot };
    assert.equal(y.bootstrap.method, undefined);
    assert.equal(y.bootstrap.pgha_restore, undefined);
  });

  void it('refuses a staging tag outside its grammar', async () => {
    const inv = await lab();
    assert.throws(() => restoreStaging(inv, '../x'), /restore tag/);
  });
});

void describe('restore: the recovery target flags', () => {
  void it('none: the end of the archive; each flag its kind', () => {
    assert.deepEqual(parseRestoreTarget({}), { kind: 'latest' });
    assert.deepEqual(parseRestoreTarget({ targetTime: '2026-11-29 23:05:00+01:00' }), {
      kind: 'time',
      time: '2026-11-29T22:05:00.000Z',
    });
    assert.deepEqual(parseRestoreTarget({ targetLsn: '0/3000148' }), { kind: 'lsn', lsn: '0/3000148' });
    assert.deepEqual(parseRestoreTarget({ targetName: 'before-migration' }), {
      kind: 'name',
      name: 'before-migration',
    });
    assert.deepEqual(parseRestoreTarget({ targetImmediate: true }), { kind: 'immediate' });
    assert.deepEqual(recoveryTargetSettings({ kind: 'immediate' }), { recovery_target: 'immediate' });
  });

  void it('refuses two targets, a time without its zone, a bad LSN, a name with a quote', () => {
    assert.throws(
      () => parseRestoreTarget({ targetTime: '2026-11-29T23:05:00Z', targetLsn: '0/1' }),
      /at most one/,
    );
    assert.throws(() => parseRestoreTarget({ targetTime: '2026-11-29T23:05:00' }), /--target-time.*zone/);
    assert.throws(() => parseRestoreTarget({ targetTime: 'yesterday' }), /--target-time/);
    assert.throws(() => parseRestoreTarget({ targetLsn: '0/3000148; rm' }), /--target-lsn/);
    assert.throws(
      () => parseRestoreTarget({ targetName: "x'\nrecovery_target_action = 'shutdown" }),
      /--target-name/,
    );
  });

  void it('orders LSNs by value, not as text', () => {
    assert.ok(lsnValue('0/A000000') > lsnValue('0/9FFFFFF'));
    assert.ok(lsnValue('1/0') > lsnValue('0/FFFFFFFF'));
  });
});
