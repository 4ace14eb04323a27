/**
 * Secret references, defined once. Workflow inputs, results and logs carry only a reference —
 * `env:NAME` (an environment variable of the worker) or `file:PATH` (a file readable by the worker)
 * — and the activity that needs the value resolves it (activities/secrets.ts), at the last moment.
 *
 * Pure (no I/O, no node builtins): the inventory schema, workflows and activities all import it.
 * Nothing here ever returns or quotes the text of a malformed reference: a string that is not a
 * reference may be the secret itself, pasted by mistake.
 */

export type SecretRef = `env:${string}` | `file:${string}`;

/** An environment variable name as a POSIX shell accepts it. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** True when `ref` has the form of a resolvable secret reference (it does not check that the secret exists). */
export function isSecretRef(ref: unknown): ref is SecretRef {
  return typeof ref === 'string' && /^(env:[A-Za-z_][A-Za-z0-9_]*|file:\/.+)$/.test(ref);
}

/** Characters a file: path of an inventory may hold: no whitespace, quotes, `~`, shell metacharacters. */
const PATH_SEGMENT = /^[A-Za-z0-9._+@,=-]+$/;

/**
 * What is wrong with a reference as written in an inventory, or undefined when it is well formed.
 * `file:` paths may be relative (resolved against the inventory's directory: only leading `./` and
 * `../` segments), absolute ones must be normalised. The answer never contains the reference itself.
 */
export function secretRefProblem(ref: string): string | undefined {
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    if (name === '') return 'an env: reference with no variable name';
    if (!ENV_NAME.test(name))
      return 'an env: reference whose name is not a valid environment variable name (letters, digits, _; not starting with a digit)';
    return undefined;
  }
  if (ref.startsWith('file:')) {
    const path = ref.slice(5);
    if (path === '') return 'a file: reference with no path';
    if (/^\s/.test(path)) return 'a file: reference with whitespace after the colon';
    if (/\s/.test(path)) return 'a file: reference whose path contains whitespace';
    if (path.startsWith('~')) return 'a file: reference starting with ~ (no shell expands it)';
    const segs = path.split('/');
    const absolute = path.startsWith('/');
    if (absolute) segs.shift();
    if (path.endsWith('/')) return 'a file: reference ending with / (a directory, not a file)';
    let leading = !absolute;
    for (const seg of segs) {
      if (seg === '') return 'a file: reference with an empty path segment (//)';
      if (seg === '.' || seg === '..') {
        if (leading) continue;
        return absolute
          ? 'a file: reference with . or .. segments (not normalised)'
          : 'a file: reference with . or .. after the first name (not normalised)';
      }
      leading = false;
      if (!PATH_SEGMENT.test(seg))
        return 'a file: reference whose path holds characters other than letters, digits and . _ + @ , = - (no shell metacharacters)';
    }
    if (leading) return 'a file: reference that names a directory (. or ..), not a file';
    return undefined;
  }
  return 'neither env:NAME nor file:PATH';
}
