-- HAProxy Lua: hold a new write connection while no write server is usable (a hand-off)
-- Rendered by pgha from the inventory of cluster "pve-seed". Do not edit: re-render instead.
--
-- haproxy.cfg, write frontend:
--   tcp-request inspect-delay <bound + 500ms>
--   tcp-request content lua.pgha_hold_write <backend> <bound ms>
-- While nbsrv(<backend>) is 0 the connection waits, in 10 ms steps, at most <bound ms>;
-- then it goes on: to the server that became usable, or (none within the bound) to the empty
-- backend, which closes it as it would have without the hold.

local STEP_MS = 10

local function now_ms()
  local t = core.now()
  return t.sec * 1000 + t.usec / 1000
end

core.register_action("pgha_hold_write", { "tcp-req" }, function(txn, backend, bound)
  local deadline = now_ms() + (tonumber(bound) or 0)
  while txn.f:nbsrv(backend) == 0 and now_ms() < deadline do
    core.msleep(STEP_MS)
  end
end, 2)
