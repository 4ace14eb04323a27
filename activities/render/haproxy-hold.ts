/**
 * The hold of new write connections through a hand-off (issue 17): a Lua action on HAProxy's write
 * frontend that, while the write backend has no usable server (`nbsrv` is 0: the old leader and the
 * candidate are drained by pgha's hand-off, or a failover is electing), waits in 10 ms steps up to
 * haproxy.writeHold and then lets the connection go on — to the new leader the instant pgha admits
 * it, or, when none came within the bound, to an empty backend that closes it as before.
 *
 * Measured on the lab (HAProxy 2.6.12): an action may only wait on a frontend with
 * `tcp-request inspect-delay` (without, HAProxy aborts it with "expired timeout" and the connection
 * goes on at once), so the delay is rendered half a second above the bound; sleeps of 2 ms sometimes
 * missed their wake-up (the connection then waits for the inspect-delay: delayed, never lost or
 * misrouted), 10 ms steps did not.
 */
import type { Inventory } from '../../runbooks/schema';
import { durationMs } from '../../runbooks/grammar';
import { header, type RenderedFile } from './files';

export const HAPROXY_HOLD_LUA_PATH = '/etc/haproxy/pgha-hold.lua';
/** The action's name as haproxy.cfg calls it: `tcp-request content lua.<name> <backend> <bound ms>`. */
export const HAPROXY_HOLD_ACTION = 'pgha_hold_write';
/** The Lua sleep step (ms). */
export const HAPROXY_HOLD_STEP_MS = 10;

/** The hold bound of an inventory, in ms (haproxy.writeHold, validated: 100ms-60s). */
export function writeHoldMs(inv: Inventory): number {
  const ms = durationMs(inv.haproxy.writeHold);
  if (ms === undefined) throw new Error(`haproxy.writeHold ${inv.haproxy.writeHold}: not a duration`);
  return ms;
}

/**
 * The frontend's inspect-delay: half a second above the bound, so the action is never cut short,
 * and a connection whose Lua wake-up HAProxy 2.6.12 lost (seen once in 5 switchovers with the
 * machine at load 27: served 6.1 s after it arrived) goes on soon after the bound.
 */
export const holdInspectDelayMs = (inv: Inventory) => writeHoldMs(inv) + 500;

/** The Lua file haproxy.cfg loads (`lua-load`); the backend and bound are the action's arguments. */
export function renderHaproxyHoldLua(inv: Inventory): RenderedFile {
  const comment = header(
    inv.cluster,
    'HAProxy Lua: hold a new write connection while no write server is usable (a hand-off)',
  )
    .trimEnd()
    .split('\n')
    .map((l) => l.replace(/^#/, '--'));
  const content = `${comment.join('\n')}
--
-- haproxy.cfg, write frontend:
--   tcp-request inspect-delay <bound + 500ms>
--   tcp-request content lua.${HAPROXY_HOLD_ACTION} <backend> <bound ms>
-- While nbsrv(<backend>) is 0 the connection waits, in ${HAPROXY_HOLD_STEP_MS} ms steps, at most <bound ms>;
-- then it goes on: to the server that became usable, or (none within the bound) to the empty
-- backend, which closes it as it would have without the hold.

local STEP_MS = ${HAPROXY_HOLD_STEP_MS}

local function now_ms()
  local t = core.now()
  return t.sec * 1000 + t.usec / 1000
end

core.register_action("${HAPROXY_HOLD_ACTION}", { "tcp-req" }, function(txn, backend, bound)
  local deadline = now_ms() + (tonumber(bound) or 0)
  while txn.f:nbsrv(backend) == 0 and now_ms() < deadline do
    core.msleep(STEP_MS)
  end
end, 2)
`;
  return { path: HAPROXY_HOLD_LUA_PATH, content, mode: 0o644, owner: 'root', group: 'root' };
}
