// The KMS ciphertext blob: self-describing (key id, key version), so Decrypt needs no KeyId, as in AWS.
import { aesGcmDecrypt, aesGcmEncrypt, encodeEncryptionContext, randomBytes, type EncryptionContext } from '@airlock/crypto';
import { AirlockError } from '@airlock/common';

/*
 * Layout (big-endian):
 *   0   4  magic "AKB1"
 *   4  16  key id (UUID bytes)
 *  20   4  key version (u32, from 1)
 *  24  12  nonce (random)
 *  36   n  AES-256-GCM ciphertext ‖ 16-byte tag
 * AAD = bytes 0..36 ‖ canonical encryption context, so the blob is bound to its key, version and context.
 */
const MAGIC = Buffer.from('AKB1', 'ascii');
const HEADER_LENGTH = 36;
const TAG_LENGTH = 16;
/** AWS KMS accepts ciphertext blobs of 1 to 6144 bytes. */
export const MAX_BLOB_LENGTH = 6144;

export interface BlobHeader {
  readonly keyId: string;
  readonly version: number;
}

export function uuidToBytes(uuid: string): Buffer {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new AirlockError('INVALID_ARGUMENT', 'key id is not a UUID');
  return Buffer.from(hex, 'hex');
}

export function bytesToUuid(bytes: Buffer): string {
  const h = bytes.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function invalid(): AirlockError {
  return new AirlockError('KMS_INVALID_CIPHERTEXT');
}

/** Reads the unauthenticated header of a blob, to find which key and version to decrypt with. */
export function readBlobHeader(blob: Uint8Array): BlobHeader {
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (buf.byteLength < HEADER_LENGTH + TAG_LENGTH || buf.byteLength > MAX_BLOB_LENGTH || !buf.subarray(0, 4).equals(MAGIC)) {
    throw invalid();
  }
  const version = buf.readUInt32BE(20);
  if (version === 0) throw invalid();
  return { keyId: bytesToUuid(buf.subarray(4, 20)), version };
}

export function sealBlob(material: Buffer, header: BlobHeader, plaintext: Uint8Array, context: EncryptionContext): Buffer {
  const head = Buffer.allocUnsafe(HEADER_LENGTH);
  MAGIC.copy(head, 0);
  uuidToBytes(header.keyId).copy(head, 4);
  head.writeUInt32BE(header.version, 20);
  const nonce = randomBytes(12);
  nonce.copy(head, 24);
  const sealed = aesGcmEncrypt(material, nonce, plaintext, Buffer.concat([head, encodeEncryptionContext(context)]));
  return Buffer.concat([head, sealed]);
}

/** Opens a blob with its version's key material. Any failure is KMS_INVALID_CIPHERTEXT, with no detail. */
export function openBlob(material: Buffer, blob: Uint8Array, context: EncryptionContext): Buffer {
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  readBlobHeader(buf);
  try {
    return aesGcmDecrypt(material, buf.subarray(24, 36), buf.subarray(HEADER_LENGTH), Buffer.concat([buf.subarray(0, HEADER_LENGTH), encodeEncryptionContext(context)]));
  } catch {
    throw invalid();
  }
}
