/**
 * Every runbook the chaos run knows, in the order it runs them: the backup before the drill that
 * restores it; the upgrade last (the cluster is put back on the inventory's build at the end).
 */
export const RUNBOOKS = [
  'deployCluster',
  'switchover',
  'failover',
  'rollingRestart',
  'applyConfig',
  'reinitReplica',
  'backup',
  'restoreDrill',
  'upgradePostgresql',
];
