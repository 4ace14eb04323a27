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
  /** The guardian saw a new leader key holder that did not take writes in time (activities/guardian). */
  GuardianRouteTimeout: 'GuardianRouteTimeout',
} as const;

export type FailureType = (typeof Failures)[keyof typeof Failures];

/** Failure types that end a run as *refused* (a pre-check said no; nothing was changed), not failed. */
export const REFUSAL_TYPES: readonly FailureType[] = [
  Failures.SwitchoverRefused,
  Failures.MaintenanceRefused,
  Failures.InvalidInput,
  Failures.InventoryError,
  Failures.InvalidConfigKey,
  Failures.InvalidInventory,
];
