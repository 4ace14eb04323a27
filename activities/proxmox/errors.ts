/**
 * Errors of the Proxmox transport: typed, each saying whether retrying can help.
 */
export type ProxmoxErrorKind =
  | 'HostKeyMismatch'
  | 'AuthFailed'
  | 'Unreachable'
  | 'UnknownCt'
  | 'CtNotRunning'
  | 'CommandFailed'
  | 'Timeout'
  | 'Aborted'
  | 'OutputTooLarge'
  | 'BadConfig';

/** Retrying does not help these: they need an operator (or a fixed inventory). */
const NON_RETRYABLE: ReadonlySet<ProxmoxErrorKind> = new Set([
  'HostKeyMismatch',
  'AuthFailed',
  'UnknownCt',
  'BadConfig',
  'OutputTooLarge',
]);

export class ProxmoxError extends Error {
  readonly retryable: boolean;
  constructor(
    readonly kind: ProxmoxErrorKind,
    message: string,
    readonly details: { vmid?: number; code?: number; stderrTail?: string; command?: string[] } = {},
  ) {
    super(message);
    this.name = `Proxmox${kind}`;
    this.retryable = !NON_RETRYABLE.has(kind);
  }
}

/** The last lines of a command's output, for an error message. */
export function tail(text: string, lines = 10, chars = 2000): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n').slice(-chars);
}
