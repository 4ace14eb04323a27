/**
 * The inventory as a runbook's input: the YAML document itself (secrets stay references), with
 * relative `file:` references made absolute so the worker resolves them wherever it runs. Validated
 * here first, so a mistake is reported before anything starts.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse } from 'yaml';
import { loadInventory } from '../runbooks/inventory';
import { absolutizeRef } from '../runbooks/schema';
import type { Inventory, InventoryInput } from '../runbooks/schema';

export async function inventoryInput(file: string): Promise<{ input: InventoryInput; inventory: Inventory }> {
  const inventory = await loadInventory(file); // throws with every problem, field and fix
  const abs = resolve(file);
  const raw = parse(await readFile(abs, 'utf8')) as InventoryInput;
  const base = dirname(abs);
  const proxmox = raw.proxmox;
  proxmox.privateKey = absolutizeRef(proxmox.privateKey, base);
  proxmox.hostKeyFingerprint = absolutizeRef(proxmox.hostKeyFingerprint, base);
  const secrets = raw.secrets as Record<string, string>;
  for (const k of Object.keys(secrets)) secrets[k] = absolutizeRef(secrets[k]!, base);
  return { input: raw, inventory };
}

/** Why a cluster cannot take a backup or a drill (it has no backup CT), or undefined when it can. */
export function noBackupCt(file: string, inventory: Inventory): string | undefined {
  return inventory.nodes.backup.length === 0
    ? `${file}: cluster ${inventory.cluster} has no backup CT (nodes.backup)`
    : undefined;
}
