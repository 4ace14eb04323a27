/**
 * What every renderer returns: a file to push into a CT, with its mode and owner, so the deploy
 * step can write it exactly (secret-bearing files at 0600) and compare before writing.
 */
export interface RenderedFile {
  path: string;
  content: string;
  /** e.g. 0o600; files holding a secret are always 0o600. */
  mode: number;
  owner: string;
  group: string;
}

/** First line(s) of every rendered file that takes `#` comments. */
export function header(cluster: string, what: string): string {
  return `# ${what}\n# Rendered by pgha from the inventory of cluster "${cluster}". Do not edit: re-render instead.\n`;
}
