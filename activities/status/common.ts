import { pctExec, quote } from '../command';
import { socatArgv } from '../haproxy';
import type { HaproxyNode } from '../haproxy';

/** An error as one short line for a report. */
export const msg = (err: unknown) =>
  (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 300);

/**
 * The one command (on the Proxmox host) that puts a server an interrupted hand-off left drained
 * back under its checks: `state ready` through the node's runtime API. Its health stays what its
 * checks say, so a replica stays DOWN in the write backend.
 */
export function readyFix(node: HaproxyNode, backend: string, server: string): string {
  const feed = quote(['printf', '%s\\n', `set server ${backend}/${server} state ready`]);
  return node.vmid !== undefined
    ? `${feed} | ${pctExec(node.vmid, socatArgv(node))}`
    : `${feed} | ${quote(socatArgv(node))} (inside ${node.name})`;
}
