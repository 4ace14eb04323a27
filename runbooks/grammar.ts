/**
 * The grammar of each kind of value an inventory carries into a rendered file, a systemd unit, a
 * path or a command: control characters, paths, Unix user names, PostgreSQL role names, encodings,
 * component versions, HAProxy durations, download URLs. Pure; each check answers what is wrong (a
 * short phrase for "found"), or undefined. None of them quotes the value: the caller decides
 * whether a value may be shown (secrets never are).
 */

/**
 * Characters that end or bend a line in a config file or unit: C0 (incl. NUL, CR, LF, tab), DEL, C1
 * (incl. NEL), the Unicode line and paragraph separators, and bidirectional overrides.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

const CONTROL_NAMES: Record<number, string> = {
  0x00: 'NUL',
  0x09: 'a tab',
  0x0a: 'a newline (LF)',
  0x0d: 'a carriage return (CR)',
  0x1b: 'ESC',
  0x7f: 'DEL',
  0x85: 'NEL (U+0085)',
  0x2028: 'a line separator (U+2028)',
  0x2029: 'a paragraph separator (U+2029)',
};

/** `a newline (LF)`, `a control character U+0001`, ... for the first control character in `s`. */
export function controlCharProblem(s: string): string | undefined {
  const m = CONTROL.exec(s);
  if (!m) return undefined;
  const c = m[0].codePointAt(0)!;
  return `a value containing ${CONTROL_NAMES[c] ?? `a control character U+${c.toString(16).toUpperCase().padStart(4, '0')}`} at position ${m.index + 1}`;
}

/**
 * A string as it may be printed: JSON-escaped, and so are the characters JSON leaves alone (DEL, C1,
 * the Unicode line/paragraph separators, bidi overrides) — a message never holds a control character.
 */
export function quote(s: string): string {
  return JSON.stringify(s).replace(
    /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** One path segment: letters, digits and . _ + @ , = - (no whitespace, quotes, ~, shell metacharacters). */
const PATH_SEGMENT = /^[A-Za-z0-9._+@,=-]+$/;

/**
 * Directories that are never a data, config, home or install directory of pgha: chown/rm/initdb on
 * them breaks the host (a data dir that resolves to / gets chowned).
 */
export const SYSTEM_DIRS: readonly string[] = [
  '/',
  '/bin',
  '/boot',
  '/dev',
  '/etc',
  '/etc/systemd',
  '/etc/systemd/system',
  '/etc/ssh',
  '/home',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/lost+found',
  '/media',
  '/mnt',
  '/opt',
  '/proc',
  '/root',
  '/run',
  '/sbin',
  '/srv',
  '/sys',
  '/tmp',
  '/usr',
  '/usr/bin',
  '/usr/include',
  '/usr/lib',
  '/usr/lib64',
  '/usr/libexec',
  '/usr/local',
  '/usr/local/bin',
  '/usr/local/etc',
  '/usr/local/lib',
  '/usr/local/sbin',
  '/usr/local/share',
  '/usr/sbin',
  '/usr/share',
  '/usr/src',
  '/var',
  '/var/backups',
  '/var/cache',
  '/var/lib',
  '/var/local',
  '/var/lock',
  '/var/log',
  '/var/mail',
  '/var/opt',
  '/var/run',
  '/var/spool',
  '/var/tmp',
];

/** Kernel and runtime file systems: nothing pgha keeps can live below them. */
const VIRTUAL_ROOTS = ['/proc', '/sys', '/dev', '/run'];

/** A directory of binaries may be a system one (/usr/bin), but not / nor under a kernel file system. */
export function binDirProblem(p: string): string | undefined {
  if (p === '/') return 'the root directory /';
  const root = VIRTUAL_ROOTS.find((r) => p === r || p.startsWith(`${r}/`));
  return root ? `a directory under ${root} (a kernel or runtime file system)` : undefined;
}

/**
 * What is wrong with an absolute path as written: not absolute, `~`, whitespace, shell
 * metacharacters, `//`, `.` or `..` segments, a trailing slash.
 */
export function pathProblem(p: string): string | undefined {
  if (p === '') return 'an empty path';
  if (p.startsWith('~')) return 'a path starting with ~ (no shell expands it here)';
  if (!p.startsWith('/')) return 'a relative path';
  if (/\s/.test(p)) return 'a path containing whitespace';
  if (p.length > 1024) return `a path of ${p.length} characters`;
  if (p === '/') return undefined; // well formed; whether / is acceptable is systemDirProblem's call
  if (p.endsWith('/')) return 'a path with a trailing /';
  for (const seg of p.slice(1).split('/')) {
    if (seg === '') return 'a path with an empty segment (//)';
    if (seg === '.' || seg === '..') return `a path with a "${seg}" segment (not normalised)`;
    if (!PATH_SEGMENT.test(seg))
      return 'a path with characters other than letters, digits and . _ + @ , = - (quotes, ~, $, ;, spaces and other shell metacharacters are refused)';
  }
  return undefined;
}

/** Whether `p` (well formed) is a system directory, or lies under a kernel/runtime file system. */
export function systemDirProblem(p: string): string | undefined {
  if (SYSTEM_DIRS.includes(p)) return `the system directory ${p}`;
  const root = VIRTUAL_ROOTS.find((r) => p.startsWith(`${r}/`));
  if (root) return `a directory under ${root} (a kernel or runtime file system)`;
  return undefined;
}

/** A Unix user name as useradd accepts it (lowercase, no trailing $: it is used in units and argv). */
export function unixUserProblem(u: string, opts: { rootAllowed: boolean }): string | undefined {
  if (u === '') return 'an empty user name';
  if (u.length > 32) return `a user name of ${u.length} characters (useradd allows 32)`;
  if (!/^[a-z_][a-z0-9_-]*$/.test(u))
    return 'a user name useradd refuses (lowercase letters, digits, _ and -, starting with a letter or _)';
  if (!opts.rootAllowed && u === 'root') return 'root (the service would run with every privilege)';
  return undefined;
}

/** Names PostgreSQL refuses for a role (CREATE ROLE public/none/current_user ... fails). */
const RESERVED_ROLES = ['public', 'none', 'current_user', 'session_user', 'current_role', 'user'];

/** A PostgreSQL role name pgha creates: an identifier (≤ 63 bytes), not reserved, not pg_-prefixed. */
export function roleNameProblem(r: string): string | undefined {
  if (r === '') return 'an empty role name';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(r))
    return 'a role name that is not a plain identifier (letters, digits and _, starting with a letter or _)';
  // ASCII only (above), so characters are bytes.
  if (r.length > 63) return `a role name of ${r.length} bytes (PostgreSQL truncates names to 63)`;
  if (/^pg_/i.test(r)) return "a role name starting with pg_ (reserved for PostgreSQL's predefined roles)";
  if (RESERVED_ROLES.includes(r.toLowerCase())) return `the reserved role name ${r}`;
  return undefined;
}

/** PostgreSQL's server encodings (initdb -E), as pg_encoding_to_char() names them. */
export const PG_SERVER_ENCODINGS: readonly string[] = [
  'EUC_CN',
  'EUC_JIS_2004',
  'EUC_JP',
  'EUC_KR',
  'EUC_TW',
  'ISO_8859_5',
  'ISO_8859_6',
  'ISO_8859_7',
  'ISO_8859_8',
  'KOI8R',
  'KOI8U',
  'LATIN1',
  'LATIN2',
  'LATIN3',
  'LATIN4',
  'LATIN5',
  'LATIN6',
  'LATIN7',
  'LATIN8',
  'LATIN9',
  'LATIN10',
  'MULE_INTERNAL',
  'SQL_ASCII',
  'UTF8',
  'WIN866',
  'WIN874',
  'WIN1250',
  'WIN1251',
  'WIN1252',
  'WIN1253',
  'WIN1254',
  'WIN1255',
  'WIN1256',
  'WIN1257',
  'WIN1258',
];

/** PostgreSQL compares encoding names ignoring case and non-alphanumerics (utf-8 = UTF8). */
const encKey = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, '');
const ENCODING_KEYS = new Set([...PG_SERVER_ENCODINGS.map(encKey), 'unicode']);

export function encodingProblem(e: string): string | undefined {
  return ENCODING_KEYS.has(encKey(e))
    ? undefined
    : 'an encoding PostgreSQL does not know as a server encoding';
}

/** The shape of each component's version string. */
export const VERSION_SHAPES = {
  postgresql: {
    re: /^(1\d|[2-9]\d)\.(0|[1-9]\d{0,2})$/,
    expected: 'major.minor with a major of 10 or later, e.g. "18.4" (PostgreSQL 10+ versions have two parts)',
  },
  patroni: {
    re: /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/,
    expected: 'major.minor.patch, e.g. "3.3.0" (Patroni releases have three parts)',
  },
  haproxy: {
    re: /^[1-9]\.(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2}))?$/,
    expected: 'major.minor or major.minor.patch, e.g. "2.6.12"',
  },
  etcd: {
    re: /^3\.(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2}))?$/,
    expected: 'etcd 3 as major.minor or major.minor.patch, e.g. "3.5.13" or "3.4"',
  },
} as const;

/** HAProxy's timer limit: durations are milliseconds in a signed 32-bit integer. */
export const HAPROXY_MAX_MS = 2147483647;

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of an HAProxy duration `<n><unit>`, or undefined if it is not one. */
export function durationMs(s: string): number | undefined {
  const m = /^(\d{1,16})(us|ms|s|m|h|d)$/.exec(s);
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : undefined;
}

export function durationProblem(s: string): string | undefined {
  const ms = durationMs(s);
  if (ms === undefined) return undefined; // the format itself is the schema's check
  if (ms <= 0) return 'a zero duration';
  if (ms > HAPROXY_MAX_MS) return `a duration of ${ms} ms, beyond HAProxy's limit`;
  return undefined;
}

/**
 * A download URL used in an install command: http(s), a host, a path of safe characters — no
 * quotes, spaces, `$`, `;`, `&`, `|`, backticks, `?` or other shell metacharacters, no credentials.
 */
export function urlProblem(u: string): string | undefined {
  const m = /^(https?):\/\/([^/]*)(\/.*)?$/.exec(u);
  if (!m) return 'a value that is not an http:// or https:// URL';
  const [, , host, path = ''] = m;
  if (host!.includes('@')) return 'a URL with credentials in it';
  if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(host!) || host!.startsWith('-') || host!.startsWith('.'))
    return 'a URL whose host is not a host name or address';
  if (!/^[A-Za-z0-9._~%/+:=,@-]*$/.test(path))
    return 'a URL with characters other than letters, digits and . _ ~ % / + : = , @ - (shell metacharacters, quotes, spaces, ? and & are refused)';
  return undefined;
}
