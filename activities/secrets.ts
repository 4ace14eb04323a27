/**
 * Secret references. Workflow inputs, results and logs carry only a reference — `env:NAME` (an
 * environment variable of the worker) or `file:PATH` (a file readable by the worker) — and the
 * activity that needs the value resolves it here, at the last moment. Errors name the reference,
 * never the value.
 */
import { readFile } from 'node:fs/promises';

export type SecretRef = `env:${string}` | `file:${string}`;

export class SecretRefError extends Error {
  override readonly name = 'SecretRefError';
  constructor(
    readonly ref: string,
    message: string,
  ) {
    super(message);
  }
}

/** True when `ref` has the form of a secret reference (it does not check that the secret exists). */
export function isSecretRef(ref: unknown): ref is SecretRef {
  return typeof ref === 'string' && /^(env:[A-Za-z_][A-Za-z0-9_]*|file:\/.+)$/.test(ref);
}

/**
 * The value behind a reference. A file's trailing newline is dropped (secrets written with `echo`);
 * an empty value is an error, as it is almost always a mistake.
 */
export async function resolveSecretRef(ref: string): Promise<string> {
  if (!isSecretRef(ref)) {
    // Not echoed: a string that is not a reference may be the secret itself, pasted by mistake.
    const kind = typeof ref === 'string' ? `a string of ${ref.length} characters` : typeof ref;
    throw new SecretRefError(
      '(not a reference)',
      `a secret reference must be env:NAME or file:/absolute/path; got ${kind} that is neither (literal secrets are not accepted)`,
    );
  }
  let value: string;
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    const v = process.env[name];
    if (v === undefined) {
      throw new SecretRefError(
        ref,
        `secret reference ${ref}: environment variable ${name} is not set for the worker`,
      );
    }
    value = v;
  } else {
    const path = ref.slice(5);
    try {
      value = await readFile(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new SecretRefError(ref, `secret reference ${ref}: cannot read the file (${code})`);
    }
    value = value.replace(/\r?\n$/, '');
  }
  if (value === '') throw new SecretRefError(ref, `secret reference ${ref} resolves to an empty value`);
  return value;
}
