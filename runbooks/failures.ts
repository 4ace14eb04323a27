/**
 * Failure type names: what activities throw (ApplicationFailure type, or an Error's class name, which
 * the SDK uses as the type) and what workflows list in `nonRetryableErrorTypes` or branch on. Pure:
 * workflows and activities import the same constants, so no type name is written twice.
 */
export const Failures = {
  /** A pre-check against the live cluster said no: nothing was changed. */
  SwitchoverRefused: 'SwitchoverRefused',
  /** The hand-off was attempted and did not end as asked. */
  SwitchoverFailed: 'SwitchoverFailed',
  MaintenanceRefused: 'MaintenanceRefused',
  MaintenanceFailed: 'MaintenanceFailed',
  /** deployCluster's final verdict was not healthy. */
  DeployUnhealthy: 'DeployUnhealthy',
  /** Bad input (an argument or the inventory), found before anything ran. */
  InvalidInput: 'InvalidInput',
  /** The inventory a workflow was given does not parse (the workflows' own check, before any step). */
  InvalidInventory: 'InvalidInventory',
  /** Another pgha operation holds the cluster lock. */
  ClusterBusy: 'ClusterBusy',
  /** A second decision for an approval gate already decided (an update rejected, the run goes on). */
  GateAlreadyDecided: 'GateAlreadyDecided',
  ApprovalRejected: 'ApprovalRejected',
  ApprovalTimedOut: 'ApprovalTimedOut',
  PauseTimedOut: 'PauseTimedOut',
  // Error classes of the system modules (their `name`, which becomes the failure type):
  PatroniAuthRejectedError: 'PatroniAuthRejectedError',
  PatroniUnreachableError: 'PatroniUnreachableError',
  PostgresAuthError: 'PostgresAuthError',
  PostgresUnreachableError: 'PostgresUnreachableError',
  PostgresReadOnlyError: 'PostgresReadOnlyError',
  EtcdUnavailableError: 'EtcdUnavailableError',
  SecretRefError: 'SecretRefError',
  CommandQuoteError: 'CommandQuoteError',
  CommandTooLongError: 'CommandTooLongError',
  InventoryError: 'InventoryError',
  InvalidConfigKey: 'InvalidConfigKey',
  NodeCommandError: 'NodeCommandError',
  // The smoke runbook's marker checks (activities/smoke.ts):
  SmokeMarkerMissing: 'SmokeMarkerMissing',
  SmokeMarkerMismatch: 'SmokeMarkerMismatch',
  SmokeMarkerSignature: 'SmokeMarkerSignature',
  // The etcd runbooks (activities/etcd-ops/): a pre-check said no / the operation did not end as asked.
  EtcdRefused: 'EtcdRefused',
  EtcdFailed: 'EtcdFailed',
  /** The Patroni upgrade's pre-check said no (nothing was changed). */
  PatroniUpgradeRefused: 'PatroniUpgradeRefused',
  /** A member's Patroni switch did not end as asked (it was rolled back; the run says what to do). */
  PatroniUpgradeFailed: 'PatroniUpgradeFailed',
  // The rolling upgrades (workflows/upgrade-*.ts):
  /** A member did not come back on the new build: it was rolled back, the run stopped, the cluster serves. */
  UpgradeRolledBack: 'UpgradeRolledBack',
  /** The upgrade stopped part way (a member down, a failed switchover): the message says where it stands. */
  UpgradeFailed: 'UpgradeFailed',
  /** The backup CT could not be set up (no backup CT, its storage, Barman's install). */
  BackupSetupError: 'BackupSetupError',
  /** A backup step reached a member that is not the leader (retryable: the leader is looked up again). */
  BackupNotLeader: 'BackupNotLeader',
  /** A restore drill cannot use the backup asked for (unknown, not DONE, tablespaces, another major): nothing was restored. */
  DrillRefused: 'DrillRefused',
  /** A restore drill found a problem with the backup (named in the message): the backup is not proven. */
  DrillFailed: 'DrillFailed',
  /** A restore cannot go ahead (unknown backup, another cluster's, a target outside the recoverable window): nothing was changed. */
  RestoreRefused: 'RestoreRefused',
  /** A restore failed after it changed something; the message says whether the old data was put back. */
  RestoreFailed: 'RestoreFailed',
  /** The guardian saw a new leader key holder that did not take writes in time (activities/guardian). */
  GuardianRouteTimeout: 'GuardianRouteTimeout',
  // Notifications (activities/notify.ts): never fail a runbook, but are not retried either.
  /** notify.webhook does not resolve to an http(s) URL. */
  NotifyWebhookInvalid: 'NotifyWebhookInvalid',
  /** The webhook refused the message (4xx other than 408/429: revoked, wrong URL). */
  NotifyWebhookRefused: 'NotifyWebhookRefused',
  // The major upgrade (workflows/upgrade-major.ts):
  /** Its pre-check said no (pg_upgrade --check, an extension, a member behind): nothing was changed. */
  MajorUpgradeRefused: 'MajorUpgradeRefused',
  /** A step did not end as asked (the workflow rolls back to the old major if before the point of no return). */
  MajorUpgradeFailed: 'MajorUpgradeFailed',
  /** Failed before the point of no return: the old major was brought back and serves. */
  MajorUpgradeRolledBack: 'MajorUpgradeRolledBack',
  /** Failed after the new cluster started: no way back to the old major; the message says where it stands. */
  MajorUpgradePastPoint: 'MajorUpgradePastPoint',
} as const;

export type FailureType = (typeof Failures)[keyof typeof Failures];

/** Failure types that end a run as *refused* (a pre-check said no; nothing was changed), not failed. */
export const REFUSAL_TYPES: readonly FailureType[] = [
  Failures.SwitchoverRefused,
  Failures.MaintenanceRefused,
  Failures.DrillRefused,
  Failures.RestoreRefused,
  Failures.InvalidInput,
  Failures.InventoryError,
  Failures.InvalidConfigKey,
  Failures.InvalidInventory,
  Failures.EtcdRefused,
  Failures.PatroniUpgradeRefused,
  Failures.MajorUpgradeRefused,
];
