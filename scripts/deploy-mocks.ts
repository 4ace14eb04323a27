/**
 * Mock activities for deployCluster: each records "name host" in call order and returns a result of
 * the real one's shape. Used by scripts/record-history.ts (the saved deploy history) and by
 * test/workflow/deploy.test.ts (through test/helpers/deploy-mocks.ts): it lives here because scripts/
 * never import test/.
 */
export function deployMocks(
  opts: {
    existingLeader?: string;
    /** What the final status step judges (default healthy, no reasons). */
    verdict?: { status: 'healthy' | 'degraded' | 'down'; reasons: string[] };
  } = {},
) {
  const calls: string[] = [];
  const rec =
    (name: string, result: unknown = {}) =>
    async (a: { hostname?: string } = {}) => {
      calls.push(a.hostname ? `${name} ${a.hostname}` : name);
      return result;
    };
  return {
    calls,
    activities: {
      preflightNode: rec('preflightNode'),
      installEtcd: rec('installEtcd'),
      etcdWaitHealthy: rec('etcdWaitHealthy', []),
      installPostgres: rec('installPostgres'),
      findLeader: async () => {
        calls.push('findLeader');
        return opts.existingLeader;
      },
      startPatroni: rec('startPatroni'),
      waitPrimary: async (a: { hostname: string }) => {
        calls.push(`waitPrimary ${a.hostname}`);
        return { leader: a.hostname, timeline: 1, systemIdentifier: '1' };
      },
      waitReplication: rec('waitReplication', []),
      installHaproxy: rec('installHaproxy'),
      checkThroughHaproxy: rec('checkThroughHaproxy', { writes: [], reads: [] }),
      // The backup CT (an inventory with nodes.backup, in runs patched deploy-backup-ct).
      prepareBackupCluster: async (a: { leader: string }) => {
        calls.push(`prepareBackupCluster ${a.leader}`);
        return { roles: [], slot: [] };
      },
      installBackup: rec('installBackup'),
      waitBarmanReady: rec('waitBarmanReady', { server: 'lab', ok: true, checks: [] }),
      // In runs patched deploy-backup-synchronous: what backup.synchronous (or --synchronous) asked.
      ensureBackupSynchronous: async (a: { inv: { backup: { synchronous: boolean } } }) => {
        calls.push(`ensureBackupSynchronous ${a.inv.backup.synchronous ? 'sync' : 'async'}`);
        return { synchronous: a.inv.backup.synchronous, changed: [] };
      },
      clusterStatus: async () => {
        calls.push('clusterStatus');
        return { verdict: opts.verdict ?? { status: 'healthy', reasons: [] } };
      },
    },
  };
}
