// RFC 2047 encoded-words for user metadata: decoding what clients send, encoding what S3 returns.
import { describe, expect, it } from 'vitest';
import { decodeHeaderText, encodeHeaderText } from './mime-words.js';

const wire = (text: string): string => Buffer.from(text, 'utf8').toString('latin1');

describe('decodeHeaderText', () => {
  it('reads raw bytes as UTF-8, falling back to latin1', () => {
    expect(decodeHeaderText(wire('你好，世界'))).toBe('你好，世界');
    expect(decodeHeaderText('caf\xe9')).toBe('café');
    expect(decodeHeaderText('plain ascii')).toBe('plain ascii');
  });

  it('decodes B and Q words in UTF-8 and latin1, joining adjacent words', () => {
    expect(decodeHeaderText('=?UTF-8?B?5L2g5aW977yM5LiW55WM?=')).toBe('你好，世界');
    expect(decodeHeaderText('=?UTF-8?q?=E4=BD=A0=E5=A5=BD=EF=BC=8C=E4=B8=96=E7=95=8C?=')).toBe('你好，世界');
    expect(decodeHeaderText('=?iso-8859-1?q?caf=E9_cr=E8me?=')).toBe('café crème');
    expect(decodeHeaderText('=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=')).toBe('éé');
    expect(decodeHeaderText('a =?utf-8?b?w6k=?= b')).toBe('a é b');
  });

  it('leaves what is not a decodable word alone', () => {
    for (const text of ['=?koi8-r?B?w6k=?=', '=?UTF-8?B?not base64!?=', '=?UTF-8?Q?=ZZ?=', '=?UTF-8?B?/w==?=', '1+1=2?']) expect(decodeHeaderText(text)).toBe(text);
  });
});

describe('encodeHeaderText', () => {
  it('keeps printable ASCII and encodes anything else as UTF-8 B words of at most 75 characters', () => {
    expect(encodeHeaderText('hello, world')).toBe('hello, world');
    expect(encodeHeaderText('你好，世界')).toBe('=?UTF-8?B?5L2g5aW977yM5LiW55WM?=');
    const long = '😀'.repeat(40);
    const encoded = encodeHeaderText(long);
    for (const word of encoded.split(' ')) expect(word.length).toBeLessThanOrEqual(75);
    expect(decodeHeaderText(encoded)).toBe(long);
  });
});
