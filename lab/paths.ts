/** Where the lab keeps its state. Everything under LAB_DIR is the lab's and goes with `lab down`. */
export const LAB_DIR = '/var/lib/pgha-lab';
export const LXC_PATH = `${LAB_DIR}/lxc`;
export const SSH_DIR = `${LAB_DIR}/ssh`;
export const BIN_DIR = `${LAB_DIR}/bin`;
/** Machine-wide caches built by lab/bootstrap; kept by `lab down`. */
export const CACHE_DIR = process.env.PGHA_CACHE ?? '/var/cache/pgha';
export const BRIDGE = 'pglab0';
/** Where the offline package directory appears inside every CT (read-only). */
export const OFFLINE_MOUNT = '/opt/pgha-offline';
/** Where Barman's wheels appear inside backup CTs (read-only). */
export const BARMAN_MOUNT = '/opt/pgha-barman';
