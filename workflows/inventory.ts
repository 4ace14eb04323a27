/**
 * The one way a workflow turns its input's inventory into a checked `Inventory`: a parse error ends
 * the run at once, before any step, as InvalidInventory (a refusal: nothing ran, PgOutcome=refused)
 * naming the field.
 */
import { ApplicationFailure } from '@temporalio/workflow';
import { recordOutcome } from './steps';
import { Failures } from '../runbooks/failures';
import type { FailureType } from '../runbooks/failures';
import { parseInventory } from '../runbooks/schema';
import type { Inventory, InventoryInput } from '../runbooks/schema';

export function inventoryOf(input: { inventory: InventoryInput }): Inventory {
  try {
    return parseInventory(input.inventory);
  } catch (err) {
    refuse((err as Error).message, Failures.InvalidInventory);
  }
}

/**
 * Ends the run before any step as refused (PgOutcome=refused; nothing was changed) with this
 * failure type, one of REFUSAL_TYPES.
 */
export function refuse(message: string, type: FailureType): never {
  recordOutcome('refused');
  throw ApplicationFailure.nonRetryable(message, type);
}

/** Bad input found before anything ran (a refusal): the message names the field and the fix. */
export function invalidInput(message: string): never {
  refuse(message, Failures.InvalidInput);
}
