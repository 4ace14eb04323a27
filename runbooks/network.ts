/**
 * Network math for the inventory: IPv4 addresses, CIDRs, host names. Pure.
 */

export const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** A DNS host name (RFC 1123): dot-separated labels of letters, digits and -, no label starting or ending with -. */
const DNS_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export interface Cidr {
  base: number;
  bits: number;
}

export function isIpv4(s: unknown): s is string {
  return typeof s === 'string' && IPV4.test(s);
}

/** A host name or an IPv4 address (never something an ssh/pct argv could read as an option). */
export function isHostOrIp(s: string): boolean {
  if (isIpv4(s)) return true;
  // All-numeric dotted names that are not valid IPs (999.1.1.1) are typos of an address.
  if (/^[\d.]+$/.test(s)) return false;
  return DNS_NAME.test(s);
}

export function ipToInt(ip: string): number | undefined {
  if (!IPV4.test(ip)) return undefined;
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

export function parseCidr(s: unknown): Cidr | undefined {
  if (typeof s !== 'string') return undefined;
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const base = ipToInt(m[1]!);
  const bits = Number(m[2]);
  if (base === undefined || bits > 32) return undefined;
  return { base, bits };
}

export function cidrMask(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

export function ipInCidr(ip: string, cidr: Cidr): boolean {
  const n = ipToInt(ip);
  if (n === undefined) return false;
  const mask = cidrMask(cidr.bits);
  return (n & mask) >>> 0 === (cidr.base & mask) >>> 0;
}
