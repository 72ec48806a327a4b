// Encryption contexts: the name/value pairs that say what a key protects, in one canonical byte form.
import { AirlockError } from '@airlock/common';

/**
 * Names what a ciphertext protects, e.g. `{ bucket, key }` or `{ project, secret }`. It is bound as
 * associated data, so ciphertext moved to a place with a different context does not decrypt.
 */
export type EncryptionContext = Readonly<Record<string, string>>;

/** Upper bound on the encoded size of a context; contexts are names, not data. */
export const MAX_ENCRYPTION_CONTEXT_BYTES = 8192;

const EMPTY_CONTEXT = Buffer.from([0, 0]);

/**
 * Canonical encoding: u16 pair count, then for each pair in ascending byte order of the UTF-8 key,
 * u16 key length ‖ key ‖ u16 value length ‖ value (all big-endian). Two contexts encode equally
 * exactly when they hold the same pairs, regardless of property order.
 */
export function encodeEncryptionContext(context: EncryptionContext = {}): Buffer {
  if (typeof context !== 'object' || context === null || Array.isArray(context)) {
    throw new AirlockError('INVALID_ARGUMENT', 'encryption context must be an object of strings', {
      details: { argument: 'context' },
    });
  }
  const entries = Object.entries(context);
  if (entries.length === 0) return EMPTY_CONTEXT;
  const pairs = entries.map(([key, value]) => {
    if (typeof value !== 'string') {
      throw new AirlockError('INVALID_ARGUMENT', 'encryption context values must be strings', {
        details: { argument: 'context' },
      });
    }
    return [Buffer.from(key, 'utf8'), Buffer.from(value, 'utf8')] as const;
  });
  pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
  let size = 2;
  for (const [key, value] of pairs) size += 4 + key.byteLength + value.byteLength;
  if (size > MAX_ENCRYPTION_CONTEXT_BYTES || pairs.length > 0xffff) {
    throw new AirlockError('INVALID_ARGUMENT', `encryption context must encode to at most ${MAX_ENCRYPTION_CONTEXT_BYTES} bytes`, {
      details: { argument: 'context' },
    });
  }
  const out = Buffer.allocUnsafe(size);
  let offset = out.writeUInt16BE(pairs.length, 0);
  for (const [key, value] of pairs) {
    offset = out.writeUInt16BE(key.byteLength, offset);
    offset += key.copy(out, offset);
    offset = out.writeUInt16BE(value.byteLength, offset);
    offset += value.copy(out, offset);
  }
  return out;
}
