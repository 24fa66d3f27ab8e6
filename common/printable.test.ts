import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { jsonLine, printable, shq } from './printable.ts';

describe('common/printable: outside strings on a terminal', () => {
  it('leaves ordinary text, UTF-8 included, as it is', () => {
    for (const s of ['', 'bash', '/etc/passwd', 'kworker/0:1H', 'naïve café 日本', 'a b']) expect(printable(s)).toBe(s);
  });

  it('escapes what a terminal would act on', () => {
    expect(printable('\x1b]0;pwned\x07')).toBe('\\x1b]0;pwned\\x07'); // retitle the window
    expect(printable('\x1b[2J\x1b[31mRED')).toBe('\\x1b[2J\\x1b[31mRED'); // clear, recolour
    expect(printable('a\nb\r\tc\0')).toBe('a\\nb\\r\\tc\\x00'); // one line stays one line
    expect(printable('x\x7fy\u009b1m')).toBe('x\\x7fy\\x9b1m'); // DEL, 8-bit CSI
    expect(printable('evil\u202etxt.exe')).toBe('evil\\u202etxt.exe'); // right-to-left override
    expect(printable('\u2066\u2069\u200e\u061c')).toBe('\\u2066\\u2069\\u200e\\u061c');
  });

  it('doubles a backslash, so an escape shown reads back to one string', () => {
    expect(printable('C:\\x1b')).toBe('C:\\\\x1b');
    expect(printable('C:\\x1b')).not.toBe(printable('C:\x1b'));
  });
});

describe('common/printable: jsonLine', () => {
  it('is JSON that parses back to the value, with nothing a terminal acts on left raw', () => {
    const v = { filename: '/tmp/evil\u202egpj.sh', argv0: 'a\x1b]0;x\x07b\u009b31m\x7f', n: 1, ok: 'naïve 日本' };
    const line = jsonLine(v);
    expect(JSON.parse(line)).toEqual(v);
    expect(line).not.toMatch(/[\x00-\x1f\x7f-\x9f\u202e]/);
    expect(line).toContain('\\u202e');
    expect(line).toContain('naïve 日本');
    expect(jsonLine({ a: 'plain' })).toBe(JSON.stringify({ a: 'plain' }));
  });
});

describe('common/printable: shq', () => {
  it('gives one word that /bin/sh reads back to the same string', () => {
    for (const v of ['plain-name_1.2', "it's", 'a b', '$(touch /nonexistent)', '`x`', 'semi;colon', '', "'", 'naïve 日本', 'back\\slash', 'new\nline']) {
      expect(execFileSync('/bin/sh', ['-c', `printf %s ${shq(v)}`], { encoding: 'utf8' })).toBe(v);
    }
    expect(shq('plain-name_1.2')).toBe('plain-name_1.2');
    expect(shq("it's")).toBe("'it'\\''s'");
  });
});
