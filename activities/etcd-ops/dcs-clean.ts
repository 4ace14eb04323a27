/**
 * The seed's last-resort "clean Patroni's data in etcd" (`etcdctl del --prefix /patroni/`), made
 * safe: only this cluster's keys (`/<namespace>/<scope>/`, from the inventory), and only while no
 * Patroni member of the cluster runs (a running Patroni would re-create its keys at once or, worse,
 * act on a DCS that lost its leader and history). The workflow puts an approval gate between the
 * check and the delete; the delete checks again.
 */
import type { Inventory } from '../../runbooks/schema';
import { etcdEndpoints, patroniKeyPrefix, restApi } from '../../runbooks/topology';
import { cancellationSignal } from '../poll';
import { fail, refuse } from './common';
import type { EtcdOpsDeps } from './types';

export interface DcsCleanCheck {
  prefix: string;
  /** The keys under the prefix now (names only). */
  keys: string[];
  /** Each PostgreSQL member: its Patroni service state and whether the REST API answered. */
  members: { member: string; service: string; restApi: boolean }[];
}

async function patroniStates(deps: EtcdOpsDeps, inv: Inventory): Promise<DcsCleanCheck['members']> {
  const sh = await deps.hostFor(inv.proxmox);
  return Promise.all(
    inv.nodes.postgres.map(async (n) => {
      let service: string;
      try {
        const st = await sh.status(n.vmid);
        if (st === 'stopped') service = 'CT stopped';
        else {
          const r = await sh.exec(n.vmid, ['systemctl', 'is-active', 'patroni'], {
            timeoutMs: 15_000,
            signal: cancellationSignal(),
          });
          service = r.stdout.trim() || `unknown (exit ${r.code})`;
        }
      } catch (err) {
        service = `unknown (${(err as Error).message.slice(0, 120)})`;
      }
      let rest = false;
      try {
        await deps.patroni.patroniGetPatroni({ target: restApi(inv, n.hostname) });
        rest = true;
      } catch {
        rest = false;
      }
      return { member: n.hostname, service, restApi: rest };
    }),
  );
}

/** Refuses while any Patroni of the cluster runs (or its state cannot be told); lists the keys. */
export async function dcsCleanCheck(deps: EtcdOpsDeps, args: { inv: Inventory }): Promise<DcsCleanCheck> {
  const { inv } = args;
  const members = await patroniStates(deps, inv);
  const running = members.filter(
    (m) => m.restApi || !(m.service === 'inactive' || m.service === 'failed' || m.service === 'CT stopped'),
  );
  if (running.length > 0) {
    refuse(
      `Patroni runs (or its state is unknown) on ${running
        .map((m) => `${m.member} (service ${m.service}${m.restApi ? ', REST API answers' : ''})`)
        .join(', ')}: nothing was deleted. Stop Patroni on every member first ` +
        `(systemctl stop patroni in each PostgreSQL CT), then run this again`,
    );
  }
  const { prefix, keys } = await deps.etcd.etcdPatroniKeys({
    endpoints: etcdEndpoints(inv),
    namespace: inv.patroni.namespace,
    scope: inv.patroni.scope,
  });
  if (prefix !== patroniKeyPrefix(inv))
    fail(`key prefix ${prefix} differs from the inventory's ${patroniKeyPrefix(inv)}`);
  return { prefix, keys: keys.map((k) => k.key), members };
}

export interface DcsCleanResult {
  prefix: string;
  deleted: number;
  /** Keys under the prefix after the delete (the post-check: 0). */
  left: number;
}

export async function dcsCleanDelete(deps: EtcdOpsDeps, args: { inv: Inventory }): Promise<DcsCleanResult> {
  const { inv } = args;
  const check = await dcsCleanCheck(deps, args); // again: a Patroni may have been started since the gate
  const endpoints = etcdEndpoints(inv);
  const scoped = { endpoints, namespace: inv.patroni.namespace, scope: inv.patroni.scope };
  const deleted = await deps.admin.deletePatroniKeys(scoped);
  const after = await deps.etcd.etcdPatroniKeys(scoped);
  if (after.keys.length > 0) {
    fail(
      `${after.keys.length} key(s) under ${check.prefix} after the delete: ${after.keys.map((k) => k.key).join(', ')}`,
    );
  }
  return { prefix: check.prefix, deleted, left: after.keys.length };
}
