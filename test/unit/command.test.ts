/**
 * activities/command.ts: argv survives a real shell byte-exact. Every case is quoted, handed to
 * `sh -c` (dash on Debian) and `bash -c`, and the shell's own word splitting must give back argv.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import {
  CommandQuoteError,
  CommandTooLongError,
  HOST_COMMAND_MAX_BYTES,
  checkCommandLength,
  pct,
  pctExec,
  quote,
  quoteArg,
} from '../../activities/command';
import { Failures } from '../../runbooks/failures';

/** What the shell makes of `quote(argv)`: each word it passes to printf, NUL-terminated. */
function throughShell(shell: 'sh' | 'bash', argv: string[], cwd?: string): string[] {
  const out = execFileSync(shell, ['-c', `printf '%s\\0' ${quote(argv)}`], { cwd });
  const words = out.toString('utf8').split('\0');
  assert.equal(words.pop(), '', 'output ends with a NUL');
  return words;
}

const nasty: Record<string, string[]> = {
  spaces: ['a b', '  leading', 'trailing  ', 'tab\there'],
  quotes: [`it's`, `"double"`, `'`, `''`, `"'"'"`, `\\'`, 'back\\slash\\'],
  substitution: ['$(touch /tmp/pgha-pwned)', '`id`', '$HOME', '${PATH}', '$((1+1))', '$', '$1'],
  separators: [';', 'a; rm -rf /nonexistent', 'x | cat', '&&', '||', '&', 'a > /tmp/pgha-x', '< /etc/passwd'],
  newlines: ['line1\nline2', '\n', 'cr\r\nlf', 'trailing\n'],
  globs: ['*', '?', '[abc]', '/etc/*', '{a,b}', '~', '~root', '!', '#comment', '-n', '--', '-e'],
  utf8: ['пароль', 'λ→∞', '日本語', '🐘 postgres', 'e\u0301'],
  empty: [''],
  assignment: ['FOO=bar', 'a=b c'],
  control: ['\x01\x07\x1b[31m', '\x7f'],
};

void describe('quote', () => {
  for (const [name, argv] of Object.entries(nasty)) {
    for (const shell of ['sh', 'bash'] as const) {
      void it(`${name} round-trip through ${shell} -c`, () => {
        assert.deepEqual(throughShell(shell, argv), argv);
        // and each argument alone, so no case hides behind a neighbour
        for (const a of argv) assert.deepEqual(throughShell(shell, [a]), [a]);
      });
    }
  }

  void it('everything at once, and nothing is executed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgha-quote-'));
    try {
      const all = Object.values(nasty).flat();
      // globs must not expand even where files would match
      execFileSync('touch', [join(dir, 'a'), join(dir, 'b')]);
      assert.deepEqual(throughShell('sh', all, dir), all);
      assert.ok(!existsSync('/tmp/pgha-pwned'), 'command substitution ran');
      assert.ok(!existsSync('/tmp/pgha-x'), 'redirection ran');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  void it('random strings (all byte values but NUL, as UTF-8) round-trip', () => {
    for (let i = 0; i < 200; i++) {
      const argv = Array.from({ length: 1 + (i % 4) }, () => {
        // random code points: ASCII incl. controls, Latin-1, BMP (no surrogates), astral
        const n = randomBytes(1)[0]! % 24;
        let s = '';
        for (let j = 0; j < n; j++) {
          const r = randomBytes(3).readUIntBE(0, 3);
          const cp = [1 + (r % 127), 128 + (r % 128), 0xe000 + (r % 0x1000), 0x1f300 + (r % 0x200)][j % 4]!;
          s += String.fromCodePoint(cp);
        }
        return s;
      });
      assert.deepEqual(throughShell('sh', argv), argv, JSON.stringify(argv));
    }
  });

  void it('leaves plainly safe words bare and quotes the rest', () => {
    assert.equal(
      quote(['pg_ctl', '-D', '/var/lib/pgsql/18/data', 'status']),
      'pg_ctl -D /var/lib/pgsql/18/data status',
    );
    assert.equal(quoteArg(''), "''");
    assert.equal(quoteArg("it's"), `'it'\\''s'`);
    assert.equal(quoteArg('FOO=bar'), `'FOO=bar'`, 'an assignment word must not stay bare');
    assert.equal(quoteArg('~'), `'~'`);
  });

  void it('rejects a NUL byte with an error naming the argument', () => {
    assert.throws(
      () => quote(['echo', 'a\0b']),
      (err: Error) => {
        assert.ok(err instanceof CommandQuoteError);
        assert.match(err.message, /argument 1 contains a NUL byte/);
        return true;
      },
    );
  });

  void it('rejects lone surrogates and non-strings', () => {
    assert.throws(() => quote(['\ud800']), /argument 0 is not well-formed Unicode/);
    assert.throws(() => quote([42 as unknown as string]), /argument 0 is a number/);
    assert.deepEqual(throughShell('sh', ['\u{1F418}']), ['\u{1F418}'], 'a surrogate pair is fine');
  });
});

void describe('pct helpers', () => {
  void it('pctExec puts argv after -- and quotes each word once', () => {
    assert.equal(pctExec(103, ['hostname']), 'pct exec 103 -- hostname');
    assert.equal(
      pctExec(103, ['sh', '-c', 'echo "$1"', 'sh', "a'b"]),
      `pct exec 103 -- sh -c 'echo "$1"' sh 'a'\\''b'`,
    );
  });

  void it('pctExec output splits back into the pct argv', () => {
    const argv = ['printf', '%s\n', '$(id)', 'a b', ''];
    const cmd = pctExec(104, argv);
    const words = execFileSync('sh', ['-c', `printf '%s\\0' ${cmd}`])
      .toString()
      .split('\0')
      .slice(0, -1);
    assert.deepEqual(words, ['pct', 'exec', '104', '--', ...argv]);
  });

  void it('refuses a bad vmid or an empty command', () => {
    assert.throws(() => pctExec(99, ['true']), /vmid 99 is not a Proxmox CT id/);
    assert.throws(() => pctExec(103.5, ['true']), /vmid 103.5/);
    assert.throws(() => pctExec(103, []), /argv is empty/);
  });

  void it('pct builds other subcommands', () => {
    assert.equal(
      pct('push', 103, ['/tmp/f', '/etc/x y', '--perms', '0600']),
      "pct push 103 /tmp/f '/etc/x y' --perms 0600",
    );
    assert.equal(pct('status', 111), 'pct status 111');
    assert.throws(() => pct('status; reboot', 111), /not a pct subcommand/);
  });
});

void describe('command length (the host runs the line as one `bash -c` argument)', () => {
  /** A quoted line of exactly `bytes` bytes: `printf %s <x...>`. */
  const lineOf = (bytes: number) => quote(['printf', '%s', 'x'.repeat(bytes - 'printf %s '.length)]);

  void it("the limit is the kernel's: a line of the limit runs through bash -c, one byte more does not", () => {
    const fits = lineOf(HOST_COMMAND_MAX_BYTES);
    assert.equal(Buffer.byteLength(fits), HOST_COMMAND_MAX_BYTES);
    assert.equal(execFileSync('bash', ['-c', fits]).length, HOST_COMMAND_MAX_BYTES - 'printf %s '.length);
    const over = lineOf(HOST_COMMAND_MAX_BYTES + 1);
    assert.throws(() => execFileSync('bash', ['-c', over], { stdio: 'ignore' }), /E2BIG/);
    assert.equal(checkCommandLength(fits, ['printf']), fits);
    assert.throws(() => checkCommandLength(over, ['printf']), CommandTooLongError);
  });

  void it('a 200 KiB argument is refused before anything runs, non-retryable, naming size and limit', () => {
    const big = 'a'.repeat(200 * 1024);
    assert.throws(
      () => pctExec(103, ['sh', '-c', 'cat >/dev/null', 'sh', big]),
      (err: unknown) => {
        assert.ok(err instanceof CommandTooLongError);
        assert.ok(err instanceof ApplicationFailure, 'Temporal sees it as an ApplicationFailure');
        assert.equal(err.type, Failures.CommandTooLongError);
        assert.equal(err.nonRetryable, true);
        assert.equal(err.limit, HOST_COMMAND_MAX_BYTES);
        // the caller's five arguments, not pct's words nor a wrapper's
        assert.match(err.message, /its 5 arguments \(sh \.\.\.\) take 204820 bytes/);
        assert.match(err.message, /largest: argument 4, 204800 bytes/);
        assert.match(err.message, /limit of 131071 bytes/);
        assert.match(err.message, /stdin/);
        return true;
      },
    );
  });

  void it('counts arguments as passed, not the wrapper before them', () => {
    const big = 'b'.repeat(140 * 1024);
    assert.throws(
      () => pctExec(103, ['echo', big], ['env', 'PGHA_EXEC=0123', 'timeout', '-s', 'KILL', '65s']),
      /its 2 arguments \(echo \.\.\.\) take 143364 bytes .*largest: argument 1, 143360 bytes/,
    );
  });

  void it('counts bytes, not characters, and the line as quoted', () => {
    // 70 000 Cyrillic letters are 140 000 bytes of UTF-8
    assert.throws(() => pctExec(103, ['echo', 'я'.repeat(70_000)]), CommandTooLongError);
    // 40 000 single quotes are 40 000 bytes as passed but 160 000 quoted ('\'' each)
    assert.throws(
      () => pctExec(103, ['echo', "'".repeat(40_000)]),
      /take 40004 bytes .* 16\d{4} bytes as one command line/,
    );
    // 100 KiB still goes
    assert.ok(pctExec(103, ['echo', 'c'.repeat(100 * 1024)]).endsWith('c'));
  });

  void it('other pct subcommands are bounded too', () => {
    assert.throws(() => pct('set', 103, ['--description', 'd'.repeat(150_000)]), CommandTooLongError);
  });
});
