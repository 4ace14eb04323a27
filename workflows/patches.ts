/**
 * The patch ids of changes to released workflows (`patched(id)`): a run started before a change
 * replays the old way, a new run takes the new one. Each id says what changed; never reuse or rename
 * one while histories without it may still be running (test/histories/ replays the old ones).
 */
export const Patches = {
  /** Every run upserts PgOutcome (succeeded | refused | failed | ...) when it ends. */
  outcomeAttribute: 'pg-outcome-search-attribute',
  /** switchover refuses a scheduledAt in the past (beyond a clock-skew grace) or too far ahead. */
  scheduledAtBounds: 'switchover-scheduled-at-bounds',
  /** deployCluster fails with DeployUnhealthy when its final status verdict is not healthy. */
  deployFailsUnhealthy: 'deploy-fails-when-unhealthy',
  /** Approvers, pausers, resumers and cancellers are added to the PgOperator search attribute. */
  operatorAttribute: 'pg-operator-search-attribute',
  /** deployCluster installs the backup CT (nodes.backup): Barman's roles and slot, Barman, barman check. */
  deployBackupCt: 'deploy-backup-ct',
  /** deployCluster starts the cluster's guardian when asked (inventory `guardian: true`, `pgha deploy --guard`). */
  deployGuardian: 'deploy-starts-guardian',
  /**
   * upgradePatroni, after a member's switch failed: a look at the leader first (patroniLeaderLoss);
   * a leader lost while paused → the cluster resumed, Patroni's failover waited for, the run stops.
   */
  patroniUpgradeLeaderLoss: 'patroni-upgrade-leader-loss',
  /** deployCluster's step `backup synchronous`: Barman's receiver in synchronous_standby_names (backup.synchronous) or not. */
  deployBackupSynchronous: 'deploy-backup-synchronous',
  /** backup names its Barman backup after the workflow id and the run's start time (one per run). */
  backupNamePerRun: 'backup-name-per-run',
  /** A run of an inventory with notify.webhook tells it: started, approval needed, paused, and how it ended. */
  notifyWebhook: 'notify-webhook',
  /** --dry-run (input.dryRun): the pre-checks, then the ordered plan per node; nothing else runs. */
  dryRunPlans: 'dry-run-plans',
  /**
   * switchover / failover: a hand-off step that failed (however: refused, the leader's CT gone, the
   * attempts run out) is followed by switchoverSettle — no server left drained on any HAProxy.
   */
  settleAfterFailedHandoff: 'settle-after-failed-handoff',
  /**
   * restore stops the replicas first and the member that restores last (a leader stopped before a
   * replica let that replica promote itself: a timeline the rollback's leader does not have), and
   * its rollback waits for every member with data to stream before it reports the old data back.
   */
  restoreLeaderStopsLast: 'restore-leader-stops-last',
  /**
   * restore stages the backup on the member that restores WHILE the members stop, the keys are
   * cleaned and the data is moved aside (the stage only reads Barman's storage and writes its own
   * directory beside the data directory), and stops the replicas together (the leader still last):
   * the restore's RTO loses the shorter of the two paths.
   */
  restoreStageBesideStops: 'restore-stage-beside-stops',
  /**
   * upgradeMajor's short cutover and its missing steps: pg_upgrade, the new configuration and the
   * old Barman server's retirement at once; the new leader routed by HAProxy's runtime API the
   * instant it takes writes; then extensions updated and, with a backup CT, a fresh backup under the
   * new major's Barman server (the rollback re-activates the old one).
   */
  majorFastCutover: 'major-fast-cutover',
  /**
   * upgradeMajor with a backup CT takes a fresh backup of the old major (step `backup before`) after
   * `check` and before `pause`, while the cluster still serves: pg_upgrade --link leaves no way
   * back once the new cluster has started, and the old major's last backup may be old.
   */
  majorBackupBefore: 'major-backup-before',
} as const;
