/**
 * The one way a workflow turns its input's inventory into a checked `Inventory`: a parse error ends
 * the run at once, before any step, as InvalidInventory (a refusal: nothing ran) naming the field.
 */
import { ApplicationFailure } from '@temporalio/workflow';
import { Failures } from '../runbooks/failures';
import { parseInventory } from '../runbooks/schema';
import type { Inventory, InventoryInput } from '../runbooks/schema';

export function inventoryOf(input: { inventory: InventoryInput }): Inventory {
  try {
    return parseInventory(input.inventory);
  } catch (err) {
    throw ApplicationFailure.nonRetryable((err as Error).message, Failures.InvalidInventory);
  }
}

/** Bad input found before anything ran (a refusal): the message names the field and the fix. */
export function invalidInput(message: string): never {
  throw ApplicationFailure.nonRetryable(message, Failures.InvalidInput);
}
