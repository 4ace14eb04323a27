/**
 * The lab's inventory (runbooks/clusters/lab.yaml) for tests that never connect: every secret
 * replaced by a reference to an environment variable that is never set, so nothing is read.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseInventory } from '../../runbooks/schema';
import type { Inventory, InventoryInput } from '../../runbooks/schema';
import { repoRoot } from './local-common';

/** The lab inventory as input (secrets as unset env: references). */
export function labInventoryInput(): InventoryInput {
  const raw = parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  const secrets = Object.fromEntries(
    Object.keys(raw.secrets as object).map((k) => [k, 'env:PGHA_UNIT_UNUSED']),
  );
  return { ...raw, secrets } as InventoryInput;
}

/** The lab inventory, parsed. */
export const labInventory = (): Inventory => parseInventory(labInventoryInput());
