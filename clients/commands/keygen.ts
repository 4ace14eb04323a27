/** `pgha keygen`: a new AES-256 payload codec key in the 0600 key file (or printed, for a secret store). */
import type { Command } from 'commander';
import { codecKeyFile, generateKey, writeKeyFile } from '../codec';

export function register(program: Command): void {
  program
    .command('keygen')
    .description('write a new payload codec key (AES-256-GCM, base64) to a 0600 key file')
    .option('--file <path>', 'the key file (PGHA_CODEC_KEY_FILE)', codecKeyFile())
    .option('--force', 'replace an existing key (history written with the old key can then not be decoded)')
    .option(
      '--print',
      'print a new key instead of writing a file (to put in PGHA_CODEC_KEY via a secret store)',
    )
    .action((o: { file: string; force?: boolean; print?: boolean }) => {
      if (o.print) {
        process.stdout.write(`${generateKey()}\n`);
        return;
      }
      const r = writeKeyFile(o.file, { force: o.force });
      console.log(
        `wrote ${r.file} (mode 0600, key id ${r.keyId}). The worker, the pgha CLI and pgha codec-server read it; ` +
          `keep a copy somewhere safe: without it no payload in history can be read.`,
      );
    });
}
