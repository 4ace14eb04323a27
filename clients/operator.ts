/**
 * Who is at the keyboard: the operator every start, approval, rejection, pause, resume and cancel is
 * recorded under (the PgOperator search attribute, and the client identity in the run's history).
 * `--by NAME` on a command, else PGHA_OPERATOR, else the OS user.
 */
import { hostname, userInfo } from 'node:os';

let chosen: string | undefined;

/** A name an operator may go by: what a Keyword search attribute and a log line carry safely. */
export function checkOperatorName(name: string, field = '--by'): string {
  const n = name.trim();
  if (!/^[\p{L}\p{N}][\p{L}\p{N} ._@+-]{0,63}$/u.test(n)) {
    throw new Error(
      `${field} ${JSON.stringify(name)} is not an operator name: use 1-64 letters, digits, space, '.', '_', '@', '+' or '-' (e.g. --by alice)`,
    );
  }
  return n;
}

/** Set by `--by` (see clients/commands/index.ts): wins over PGHA_OPERATOR and the OS user. */
export function setOperator(name: string): void {
  chosen = checkOperatorName(name);
}

export function operator(): string {
  if (chosen) return chosen;
  const env = process.env.PGHA_OPERATOR;
  if (env !== undefined && env.trim() !== '') return checkOperatorName(env, 'PGHA_OPERATOR');
  let user = '';
  try {
    user = userInfo().username;
  } catch {
    user = process.env.USER ?? '';
  }
  return checkOperatorName(user || 'unknown', 'the OS user name');
}

/** The client identity Temporal records in the history of every start, signal, update and cancel. */
export function clientIdentity(): string {
  return `${operator()} (pgha ${process.pid}@${hostname()})`;
}
