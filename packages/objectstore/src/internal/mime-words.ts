// RFC 2047 encoded-words for x-amz-meta-* values: S3 decodes them on write and encodes non-ASCII values with them on read.

const ENCODED_WORD = /=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=/g;
/** RFC 2047 §2: an encoded-word is at most 75 characters; "=?UTF-8?B?" and "?=" leave 63 for base64, i.e. 45 bytes. */
const MAX_WORD_BYTES = 45;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The charsets a word may name (RFC 2047 §3; case-insensitive); a word in any other is left as it is. */
function decodeBytes(charset: string, bytes: Buffer): string | undefined {
  switch (charset.toLowerCase()) {
    case 'utf-8':
    case 'utf8':
      try {
        return utf8.decode(bytes);
      } catch {
        return undefined;
      }
    case 'iso-8859-1':
    case 'us-ascii':
      return bytes.toString('latin1');
    default:
      return undefined;
  }
}

function wordBytes(encoding: string, text: string): Buffer | undefined {
  if (encoding === 'B' || encoding === 'b') {
    return /^[A-Za-z0-9+/]*={0,2}$/.test(text) && text.length % 4 === 0 ? Buffer.from(text, 'base64') : undefined;
  }
  // Q (RFC 2047 §4.2): '_' is a space, =XX a byte, anything else itself.
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '_') bytes.push(0x20);
    else if (c === '=') {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else bytes.push(c.charCodeAt(0));
  }
  return Buffer.from(bytes);
}

/**
 * A header value as S3 stores it: the bytes on the wire read as UTF-8 (as latin1 if they are not
 * UTF-8), then every encoded-word decoded; white space between two adjacent words goes (§6.2).
 * `wire` is the value as Node hands it over: one character per byte.
 */
export function decodeHeaderText(wire: string): string {
  const raw = Buffer.from(wire, 'latin1');
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    text = wire;
  }
  if (!text.includes('=?')) return text;
  let out = '';
  let last = 0;
  let previousWordEnd = -1;
  for (const match of text.matchAll(ENCODED_WORD)) {
    const [word, charset, encoding, encoded] = match as unknown as [string, string, string, string];
    const bytes = wordBytes(encoding, encoded);
    const decoded = bytes === undefined ? undefined : decodeBytes(charset, bytes);
    if (decoded === undefined) continue;
    const between = text.slice(last, match.index);
    out += previousWordEnd === last && /^[ \t]+$/.test(between) ? '' : between;
    out += decoded;
    last = match.index + word.length;
    previousWordEnd = last;
  }
  return out + text.slice(last);
}

/** A stored value for a response header: as it is when it is printable ASCII, else RFC 2047 B words of UTF-8, as S3 returns them. */
export function encodeHeaderText(value: string): string {
  if (/^[\x20-\x7e\t]*$/.test(value)) return value;
  const words: string[] = [];
  let chunk: Buffer[] = [];
  let size = 0;
  for (const character of value) {
    const bytes = Buffer.from(character, 'utf8');
    if (size + bytes.byteLength > MAX_WORD_BYTES) {
      words.push(Buffer.concat(chunk).toString('base64'));
      chunk = [];
      size = 0;
    }
    chunk.push(bytes);
    size += bytes.byteLength;
  }
  words.push(Buffer.concat(chunk).toString('base64'));
  return words.map((word) => `=?UTF-8?B?${word}?=`).join(' ');
}
