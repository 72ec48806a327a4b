// Sealed-message (ASM1) byte layout: header encoding and parsing, purposes, info strings and key ids.
import { createHash } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import { constantTimeEqual } from '../bytes.js';

/** "ASM1": Airlock Sealed Message, format 1. */
export const MAGIC = Buffer.from('ASM1', 'ascii');
export const VERSION = 1;
/** RFC 9180 §5 mode_base. The other modes (psk, auth, auth_psk) are not used by Airlock. */
export const MODE_BASE = 0x00;
/** RFC 9180 §7.1: DHKEM(X25519, HKDF-SHA256). */
export const KEM_ID = 0x0020;
/** RFC 9180 §7.2: HKDF-SHA256. */
export const KDF_ID = 0x0001;
/** RFC 9180 §7.3: AES-256-GCM. */
export const AEAD_ID = 0x0002;

/** Key ids are the first 16 bytes of SHA-256 over the raw recipient public key. */
export const KEY_ID_LENGTH = 16;
/** Nenc for DHKEM(X25519, HKDF-SHA256) (RFC 9180 §7.1): the serialized ephemeral public key. */
export const ENC_LENGTH = 32;
/** Nt for AES-256-GCM (RFC 9180 §7.3). */
export const TAG_LENGTH = 16;

/** Offsets of the fixed part of the header. */
export const OFFSET = Object.freeze({
  magic: 0,
  version: 4,
  mode: 5,
  kemId: 6,
  kdfId: 8,
  aeadId: 10,
  keyId: 12,
  infoLength: 28,
  info: 30,
});
/** Header bytes besides the info string: magic … info length (30) plus enc (32). */
export const HEADER_OVERHEAD = OFFSET.info + ENC_LENGTH;

export const INFO_PREFIX = 'airlock/v1/';
/** A purpose is a short lowercase label; the info string is `airlock/v1/<purpose>`. */
export const PURPOSE_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const MIN_INFO_LENGTH = INFO_PREFIX.length + 1;
export const MAX_INFO_LENGTH = INFO_PREFIX.length + 63;

/**
 * Implementation limits. Sealed messages carry structured I/O, secret values and log chunks, never
 * bulk data (that goes to the object store under ASF1), so a whole message is held in memory.
 */
export const MAX_PLAINTEXT_LENGTH = 64 * 1024 * 1024;
export const MAX_AAD_LENGTH = 64 * 1024;

export function malformed(message?: string): AirlockError {
  return new AirlockError('CIPHERTEXT_MALFORMED', message);
}

/** Deliberately without detail: a failure must not reveal which check failed or why. */
export function authFailed(): AirlockError {
  return new AirlockError('CIPHERTEXT_AUTH_FAILED');
}

export function invalidArgument(argument: string, message: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', message, { details: { argument } });
}

/** Validates a purpose and returns its RFC 9180 `info` bytes, `airlock/v1/<purpose>` in ASCII. */
export function infoForPurpose(purpose: unknown): Buffer {
  if (typeof purpose !== 'string' || !PURPOSE_PATTERN.test(purpose)) {
    throw invalidArgument('purpose', 'purpose must match /^[a-z0-9][a-z0-9-]{0,62}$/');
  }
  return Buffer.from(INFO_PREFIX + purpose, 'ascii');
}

/** The 16-byte key id of a raw X25519 public key: SHA-256(publicKey)[0..16]. */
export function keyIdOf(publicKey: Uint8Array): Buffer {
  return createHash('sha256').update(publicKey).digest().subarray(0, KEY_ID_LENGTH);
}

/** Builds the header: everything up to and including enc. It is also the prefix of the HPKE AAD. */
export function encodeHeader(keyId: Uint8Array, info: Uint8Array, enc: Uint8Array): Buffer {
  const header = Buffer.alloc(HEADER_OVERHEAD + info.byteLength);
  MAGIC.copy(header, OFFSET.magic);
  header[OFFSET.version] = VERSION;
  header[OFFSET.mode] = MODE_BASE;
  header.writeUInt16BE(KEM_ID, OFFSET.kemId);
  header.writeUInt16BE(KDF_ID, OFFSET.kdfId);
  header.writeUInt16BE(AEAD_ID, OFFSET.aeadId);
  header.set(keyId, OFFSET.keyId);
  header.writeUInt16BE(info.byteLength, OFFSET.infoLength);
  header.set(info, OFFSET.info);
  header.set(enc, OFFSET.info + info.byteLength);
  return header;
}

export interface ParsedSealed {
  readonly keyId: Buffer;
  /** The info string, e.g. `airlock/v1/io`. */
  readonly info: string;
  readonly purpose: string;
  readonly enc: Buffer;
  /** Views into the input, not copies. */
  readonly header: Buffer;
  readonly ciphertext: Buffer;
}

/**
 * Parses and validates a sealed message's structure without any key. Every structural problem is
 * CIPHERTEXT_MALFORMED; a structurally valid message may still fail authentication later.
 */
export function parseSealed(sealed: Uint8Array): ParsedSealed {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (bytes.byteLength < OFFSET.info) throw malformed('sealed message is truncated');
  if (!constantTimeEqual(bytes.subarray(OFFSET.magic, OFFSET.magic + 4), MAGIC)) throw malformed('not a sealed message');
  if (bytes[OFFSET.version] !== VERSION) throw malformed('unsupported sealed message version');
  if (bytes[OFFSET.mode] !== MODE_BASE) throw malformed('unsupported HPKE mode');
  if (
    bytes.readUInt16BE(OFFSET.kemId) !== KEM_ID ||
    bytes.readUInt16BE(OFFSET.kdfId) !== KDF_ID ||
    bytes.readUInt16BE(OFFSET.aeadId) !== AEAD_ID
  ) {
    throw malformed('unsupported HPKE suite');
  }
  const infoLength = bytes.readUInt16BE(OFFSET.infoLength);
  if (infoLength < MIN_INFO_LENGTH || infoLength > MAX_INFO_LENGTH) throw malformed('bad info length');
  const headerLength = HEADER_OVERHEAD + infoLength;
  // A message always carries at least the AEAD tag, even for an empty plaintext.
  if (bytes.byteLength < headerLength + TAG_LENGTH) throw malformed('sealed message is truncated');
  if (bytes.byteLength > headerLength + MAX_PLAINTEXT_LENGTH + TAG_LENGTH) throw malformed('sealed message is too long');
  const infoBytes = bytes.subarray(OFFSET.info, OFFSET.info + infoLength);
  const info = infoBytes.toString('latin1');
  if (!info.startsWith(INFO_PREFIX)) throw malformed('bad info string');
  const purpose = info.slice(INFO_PREFIX.length);
  if (!PURPOSE_PATTERN.test(purpose)) throw malformed('bad info string');
  return {
    keyId: bytes.subarray(OFFSET.keyId, OFFSET.keyId + KEY_ID_LENGTH),
    info,
    purpose,
    enc: bytes.subarray(OFFSET.info + infoLength, headerLength),
    header: bytes.subarray(0, headerLength),
    ciphertext: bytes.subarray(headerLength),
  };
}

/** Header ‖ caller AAD: the AAD given to the HPKE AEAD (RFC 9180 §5.2 Seal/Open). */
export function hpkeAad(header: Uint8Array, aad: Uint8Array): Buffer {
  return Buffer.concat([header, aad]);
}
