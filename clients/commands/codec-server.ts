/** `pgha codec-server`: Temporal's remote codec endpoint, so the Web UI (or `temporal --codec-endpoint`) can decrypt. */
import type { Command } from 'commander';
import { createCodec, defaultCodecOrigins, startCodecServer } from '../codec';

export function register(program: Command): void {
  program
    .command('codec-server')
    .description('serve /encode and /decode with the codec key, so the Web UI can show decrypted payloads')
    .option(
      '--host <ip>',
      'address to bind (keep it on loopback: whoever reaches it can decrypt)',
      '127.0.0.1',
    )
    .option('--port <port>', 'port', '8888')
    .option('--origin <url...>', 'browser origins allowed (CORS)', defaultCodecOrigins)
    .action(async (o: { host: string; port: string; origin: string[] }) => {
      const codec = createCodec();
      const { server, url } = await startCodecServer({
        codec,
        host: o.host,
        port: Number(o.port),
        origins: o.origin,
      });
      console.log(
        [
          `pgha codec server on ${url} (key id ${codec.keyId}; origins ${o.origin.join(', ')})`,
          `  Web UI: start the server with \`npm run server -- --ui-codec-endpoint ${url}\`,`,
          `          or set it in the UI (Settings → Codec Server)`,
          `  CLI:    temporal workflow show -w <id> --codec-endpoint ${url}`,
          'Ctrl-C stops it.',
        ].join('\n'),
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      await new Promise<void>((r) => server.close(() => r()));
    });
}
