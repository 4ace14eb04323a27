/**
 * The backup section of `pgha status --backup` (activities/backup/status.ts): what it says about the
 * last backup's verification, as pgha recorded it after verify-backup and check-backup.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBackupStatus, type BackupStatus } from '../../activities/backup/status';

const status = (verified: boolean | undefined): BackupStatus => ({
  server: 'lab',
  backups: 2,
  last: {
    backupId: '20261129T191838',
    name: 'pgha-backup-lab-x',
    ageSeconds: 30,
    sizeBytes: 2 * 1048576,
    ...(verified === undefined ? {} : { verified }),
  },
  check: { ok: true, failing: [] },
  errors: [],
});

void test('the last backup: verified, verification failed, or not verified by pgha', () => {
  assert.match(
    formatBackupStatus(status(true)),
    /last backup 20261129T191838 \(pgha-backup-lab-x\): 30 s ago, 2\.0 MiB, verified; 2 DONE in all/,
  );
  assert.match(
    formatBackupStatus(status(false)),
    /2\.0 MiB, VERIFICATION FAILED \(barman verify-backup \/ check-backup\);/,
  );
  assert.match(formatBackupStatus(status(undefined)), /2\.0 MiB, not verified by pgha;/);
});
