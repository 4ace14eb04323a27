/**
 * The transport's configuration: the inventory's `proxmox` section, its secret references
 * resolved, and the host key fingerprint it pins.
 */
import { createHash } from 'node:crypto';
import { resolveSecretRef } from '../secrets';
import { ProxmoxError } from './errors';

export interface ProxmoxConfig {
  host: string;
  port?: number;
  user?: string;
  /** The private key itself (OpenSSH or PEM format), already resolved from its secret reference. */
  privateKey: string | Buffer;
  /** The pinned host key fingerprint, `SHA256:` + 43 base64 characters. */
  hostKeyFingerprint: string;
  /** SSH handshake deadline (default 15 s). */
  connectTimeoutMs?: number;
  /** Default per-command deadline (default 60 s). */
  commandTimeoutMs?: number;
  /** Commands running at once over the connection (default 8). */
  maxChannels?: number;
  /** Output beyond this many bytes (stdout + stderr) fails the command (default 256 MiB). */
  maxOutputBytes?: number;
}

/** The inventory's `proxmox` section: secrets as references (`file:` / `env:`). */
export interface ProxmoxInventorySection {
  host: string;
  port?: number;
  user?: string;
  privateKey: string;
  /** A literal `SHA256:...` or a reference to a file/variable holding it. */
  hostKeyFingerprint: string;
}

export const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** The SHA256 fingerprint of an SSH public key blob, as `ssh-keygen -l -E sha256` prints it. */
export function sshFingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** Resolve the section's secret references into a ready config. Errors name the field, never a value. */
export async function resolveProxmoxConfig(
  section: ProxmoxInventorySection,
  extra: Partial<Omit<ProxmoxConfig, 'host' | 'privateKey' | 'hostKeyFingerprint'>> = {},
): Promise<ProxmoxConfig> {
  if (!section?.host) throw new ProxmoxError('BadConfig', 'proxmox.host is missing in the inventory');
  if (!section.privateKey) {
    throw new ProxmoxError(
      'BadConfig',
      'proxmox.privateKey is missing: set it to file:/path/to/key or env:NAME',
    );
  }
  if (!section.hostKeyFingerprint) {
    throw new ProxmoxError(
      'BadConfig',
      'proxmox.hostKeyFingerprint is missing: pin the host key (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the Proxmox host)',
    );
  }
  const privateKey = await resolveSecretRef(section.privateKey);
  const fp = FINGERPRINT.test(section.hostKeyFingerprint)
    ? section.hostKeyFingerprint
    : (await resolveSecretRef(section.hostKeyFingerprint)).trim();
  return {
    ...extra,
    host: section.host,
    port: section.port,
    user: section.user,
    privateKey,
    hostKeyFingerprint: fp,
  };
}
