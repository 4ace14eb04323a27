/**
 * Resolving a secret reference to its value (I/O: the process environment, a file). Workflows never
 * import this; activities (activities/secrets.ts re-exports it) and the CLI do, at the last moment.
 * Errors name the reference, never the value.
 */
import { readFile } from 'node:fs/promises';
import { isSecretRef } from './secret-ref';

export class SecretRefError extends Error {
  override readonly name = 'SecretRefError';
  constructor(
    readonly ref: string,
    message: string,
  ) {
    super(message);
  }
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
