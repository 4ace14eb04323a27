/** HAProxy on one node: package, haproxy.cfg (checked before it goes live), started or reloaded. */
import type { Inventory } from '../../runbooks/schema';
import { runnerFromCtExec, settleNode } from '../haproxy';
import {
  HAPROXY_ADMIN_SOCKET,
  HAPROXY_CFG_PATH,
  HAPROXY_HOLD_LUA_PATH,
  HAPROXY_READ_BACKEND,
  HAPROXY_WRITE_BACKEND,
} from '../render';
import { markCluster, nodeCt, renderFor } from './context';
import { ensureDebs, runOnlineRecipe } from './packages';
import { ensureService } from './service';
import { ensureFiles } from './shell';
import { SERVICE } from './types';
import type { NodeChange, NodeDeps } from './types';

/** `haproxy -c` on a configuration file: exits non-zero, saying why, when HAProxy would refuse it. */
export const haproxyCheck = (path: string) => ['haproxy', '-c', '-f', path];

/**
 * `haproxy -c` on a Lua file alone: a config of one `lua-load` line (in a temporary file) — exit 2
 * ("no listener") means the file loaded; a Lua error exits 1, saying where.
 */
export const haproxyLuaCheck = (path: string) => [
  'sh',
  '-c',
  'f=$(mktemp) || exit 1; printf "global\\n    lua-load %s\\n" "$1" > "$f"; haproxy -c -f "$f"; r=$?; rm -f "$f"; [ $r -eq 2 ] && r=0; exit $r',
  'pgha-lua-check',
  path,
];

export async function installHaproxy(
  deps: NodeDeps,
  args: { inv: Inventory; hostname: string },
): Promise<NodeChange> {
  const { inv, hostname } = args;
  const { node, ct } = await nodeCt(deps, inv, 'haproxy', hostname);
  await markCluster(ct, inv);
  const installed =
    inv.install.haproxy.method === 'offline'
      ? await ensureDebs(ct, inv.install.haproxy.dir, ['haproxy'])
      : await runOnlineRecipe(ct, inv, 'haproxy');
  const rendered = await renderFor(inv, 'haproxy', node);
  const files = await ensureFiles(ct, rendered, {
    [HAPROXY_HOLD_LUA_PATH]: haproxyLuaCheck,
    [HAPROXY_CFG_PATH]: haproxyCheck,
  });
  await deps.afterFiles?.({ node: hostname, service: SERVICE.haproxy });
  const services = await ensureService(ct, {
    unit: SERVICE.haproxy,
    files: rendered.map((f) => f.path),
    filesChanged: files.length > 0,
    running: true,
    onChange: 'reload',
    validate: haproxyCheck(HAPROXY_CFG_PATH),
  });
  // A deploy holds the cluster lock, so no hand-off is under way: a server left drained or in
  // maintenance (an interrupted switchover or upgrade; a reload keeps those states) goes back under
  // its checks here, or new writes through this HAProxy would be held and then refused.
  const runtime = runnerFromCtExec(ct.sh);
  const admin = { name: hostname, vmid: ct.vmid, socket: HAPROXY_ADMIN_SOCKET };
  const settled = await settleNode(hostname, (cmd) => runtime(admin, cmd, { timeoutMs: 10_000 }), [
    { backend: HAPROXY_WRITE_BACKEND },
    { backend: HAPROXY_READ_BACKEND, leads: async () => false },
  ]);
  for (const s of settled) services.push(`${s}: back under its checks`);
  return { node: hostname, vmid: ct.vmid, installed, files, services };
}
