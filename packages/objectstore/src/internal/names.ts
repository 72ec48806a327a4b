// Bucket-name and object-key rules, and the keyed hashes that name them on disk.
import { AirlockError } from '@airlock/common';
import { hmacSha256 } from '@airlock/crypto';

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const IP_LIKE = /^\d+\.\d+\.\d+\.\d+$/;

/** S3's bucket naming rules (general purpose buckets). */
export function checkBucketName(name: string): string {
  if (!BUCKET.test(name) || IP_LIKE.test(name) || name.includes('..') || name.includes('.-') || name.includes('-.') || name.startsWith('xn--')) {
    throw new AirlockError('INVALID_BUCKET_NAME', 'The specified bucket is not valid.', { details: { reason: 'bucket-name' } });
  }
  return name;
}

/** Object keys are 1 – 1024 bytes of UTF-8. Any characters are allowed: names never reach the file system. */
export function checkObjectKey(key: string): string {
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes === 0 || bytes > 1024 || key.includes('\uFFFD') || /[\uD800-\uDFFF]/.test(key.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''))) {
    throw new AirlockError('INVALID_OBJECT_KEY', bytes > 1024 ? 'Your key is too long' : 'The object key is not valid');
  }
  return key;
}

/** On-disk names: HMAC-SHA256 under a key derived from the store's metadata key, so names leak nothing. */
export class NameHasher {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    this.#key = key;
  }

  bucket(name: string): string {
    return hmacSha256(this.#key, Buffer.from(`bucket\0${name}`, 'utf8')).toString('hex').slice(0, 40);
  }

  object(bucket: string, key: string): string {
    return hmacSha256(this.#key, Buffer.from(`object\0${bucket}\0${key}`, 'utf8')).toString('hex');
  }

  dispose(): void {
    this.#key.fill(0);
  }
}
