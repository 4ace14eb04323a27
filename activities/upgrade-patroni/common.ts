/** Refusals and failures of the Patroni upgrade: non-retryable, with what was found and what to do. */
import { ApplicationFailure } from '@temporalio/common';
import { Failures } from '../../runbooks/failures';

/** A pre-check said no: nothing was changed. */
export function refuse(message: string): never {
  throw ApplicationFailure.create({ type: Failures.PatroniUpgradeRefused, nonRetryable: true, message });
}

/** The step was attempted and did not end as asked. */
export function fail(message: string): never {
  throw ApplicationFailure.create({ type: Failures.PatroniUpgradeFailed, nonRetryable: true, message });
}
