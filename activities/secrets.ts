/**
 * Secret references. Workflow inputs, results and logs carry only a reference — `env:NAME` (an
 * environment variable of the worker) or `file:PATH` (a file readable by the worker) — and the
 * activity that needs the value resolves it, at the last moment. Errors name the reference, never
 * the value.
 *
 * Defined once, in runbooks/ (the inventory schema checks the same grammar); re-exported here for
 * the activities and the CLI that import them from activities/secrets.
 */
export { isSecretRef, type SecretRef } from '../runbooks/secret-ref';
export { resolveSecretRef, SecretRefError } from '../runbooks/secret-resolve';
