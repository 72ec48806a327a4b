// The KMS audit log: one encrypted, hash-chained record per operation; verify detects edits, removals and reordering.
import { closeSync, fdatasyncSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import { aesGcmDecrypt, aesGcmEncrypt, hkdfSha256, randomBytes, zeroize, type EncryptionContext } from '@airlock/crypto';

export interface AuditEntry {
  readonly time: string;
  readonly accessKeyId: string | null;
  readonly operation: string;
  readonly keyArn: string | null;
  readonly keyVersion: number | null;
  readonly encryptionContext: EncryptionContext | null;
  /** "Success", or the AWS error type returned. */
  readonly outcome: string;
  readonly sourceIp: string | null;
  /** Key-state events (operation AirlockKeyStateChange): the state published, what changed, and the event's sequence number. */
  readonly keyState?: string;
  readonly keyChange?: string;
  readonly eventSeq?: number;
}

export interface AuditRecord extends AuditEntry {
  readonly seq: number;
  readonly prevHash: string;
  readonly hash: string;
}

export interface AuditAnchor {
  readonly seq: number;
  readonly hash: string;
}

const GENESIS = '0'.repeat(64);

function auditKey(rootKey: Buffer): Buffer {
  return hkdfSha256(rootKey, Buffer.alloc(0), Buffer.from('airlock kms audit log v1'), 32);
}

/** hash = SHA-256(prevHash ‖ canonical JSON of the entry and its sequence number). */
function chainHash(seq: number, prevHash: string, entry: AuditEntry): string {
  return createHash('sha256').update(prevHash).update(JSON.stringify({ seq, ...entry })).digest('hex');
}

/**
 * Lines are base64(nonce ‖ AES-256-GCM(audit key, JSON record, aad = "seq:<n>")). Each record
 * names its predecessor's hash, so removing, reordering or editing any record breaks the chain;
 * the last sequence number and hash are anchored in the (encrypted) KMS store, so truncating the
 * tail is detected too.
 */
export class AuditLog {
  readonly #fd: number;
  readonly #key: Buffer;
  #seq: number;
  #hash: string;
  #dirty = false;

  private constructor(fd: number, key: Buffer, anchor: AuditAnchor) {
    this.#fd = fd;
    this.#key = key;
    this.#seq = anchor.seq;
    this.#hash = anchor.hash;
  }

  /**
   * Opens the log for appending, continuing from its verified tail. An incomplete final line (a
   * write cut short by a crash, past the anchor) is cut off first and reported through `onTornTail`.
   */
  static async open(path: string, rootKey: Buffer, anchor: AuditAnchor | undefined, onTornTail?: (bytes: number) => void): Promise<AuditLog> {
    const result = await verifyAuditLog(path, rootKey, anchor);
    if (!result.ok) {
      throw new AirlockError('CIPHERTEXT_AUTH_FAILED', `the KMS audit log failed verification: ${result.problems[0] ?? 'unknown problem'}`);
    }
    const fd = openSync(path, 'a', 0o600);
    if (result.tornTail !== undefined) {
      ftruncateSync(fd, result.tornTail.validBytes);
      fdatasyncSync(fd);
      onTornTail?.(result.tornTail.bytes);
    }
    return new AuditLog(fd, auditKey(rootKey), result.tail);
  }

  append(entry: AuditEntry): void {
    const seq = this.#seq + 1;
    const hash = chainHash(seq, this.#hash, entry);
    const record: AuditRecord = { seq, prevHash: this.#hash, hash, ...entry };
    const nonce = randomBytes(12);
    const sealed = aesGcmEncrypt(this.#key, nonce, Buffer.from(JSON.stringify(record)), Buffer.from(`seq:${seq}`));
    writeSync(this.#fd, `${Buffer.concat([nonce, sealed]).toString('base64')}\n`);
    this.#seq = seq;
    this.#hash = hash;
    this.#dirty = true;
  }

  /** Makes appended records durable and returns the anchor to persist, or undefined if nothing changed. */
  flush(): AuditAnchor | undefined {
    if (!this.#dirty) return undefined;
    fdatasyncSync(this.#fd);
    this.#dirty = false;
    return { seq: this.#seq, hash: this.#hash };
  }

  close(): AuditAnchor | undefined {
    const anchor = this.flush();
    closeSync(this.#fd);
    zeroize(this.#key);
    return anchor;
  }
}

export interface AuditVerification {
  readonly ok: boolean;
  readonly records: number;
  readonly problems: readonly string[];
  readonly tail: AuditAnchor;
  /**
   * The log ends in an incomplete line that is not a record: an append cut short (kill -9, power
   * loss) after the last anchored record. It is not part of the chain and hides nothing that
   * truncation past the anchor could not; the KMS cuts it off at its next start.
   */
  readonly tornTail?: { readonly bytes: number; readonly validBytes: number };
}

/** Reads and checks the whole log: every record decrypts, sequence numbers run 1..n, and each hash chains. */
export async function verifyAuditLog(path: string, rootKey: Buffer, anchor: AuditAnchor | undefined): Promise<AuditVerification> {
  let text = '';
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw AirlockError.from(error);
  }
  // Every record ends in a newline; bytes after the last one are an append that did not finish.
  const end = text.lastIndexOf('\n') + 1;
  const torn = text.slice(end);
  text = text.slice(0, end);
  const key = auditKey(rootKey);
  const problems: string[] = [];
  let prevHash = GENESIS;
  let seq = 0;
  let hashAtAnchor: string | undefined = anchor?.seq === 0 ? GENESIS : undefined;
  try {
    const lines = text.split('\n').filter((line) => line.length > 0);
    for (const [index, line] of lines.entries()) {
      const lineNo = index + 1;
      const bytes = Buffer.from(line, 'base64');
      let record: AuditRecord | undefined;
      // A record sealed for sequence n only opens with aad "seq:<n>"; try the expected one first.
      for (const candidate of [seq + 1, lineNo]) {
        try {
          record = JSON.parse(aesGcmDecrypt(key, bytes.subarray(0, 12), bytes.subarray(12), Buffer.from(`seq:${candidate}`)).toString('utf8')) as AuditRecord;
          break;
        } catch {
          record = undefined;
        }
      }
      if (record === undefined) {
        problems.push(`line ${lineNo}: record does not decrypt in this position (edited, or moved)`);
        break;
      }
      const { seq: recordSeq, prevHash: recordPrev, hash, ...entry } = record;
      if (recordSeq !== seq + 1) problems.push(`line ${lineNo}: sequence ${recordSeq} follows ${seq} (record removed or reordered)`);
      if (recordPrev !== prevHash) problems.push(`line ${lineNo}: previous-hash link broken (record removed, reordered or edited)`);
      if (chainHash(recordSeq, recordPrev, entry) !== hash) problems.push(`line ${lineNo}: record hash does not match its content (edited)`);
      if (problems.length > 0) break;
      seq = recordSeq;
      prevHash = hash;
      if (anchor !== undefined && seq === anchor.seq) hashAtAnchor = hash;
    }
  } finally {
    zeroize(key);
  }
  if (problems.length === 0 && anchor !== undefined) {
    if (anchor.seq > seq) problems.push(`log ends at record ${seq} but the store's anchor is at record ${anchor.seq} (records removed from the end)`);
    else if (hashAtAnchor !== anchor.hash) problems.push(`record ${anchor.seq} does not match the store's anchor (log rewritten)`);
  }
  return {
    ok: problems.length === 0,
    records: seq,
    problems,
    tail: { seq, hash: prevHash },
    ...(torn.length > 0 ? { tornTail: { bytes: Buffer.byteLength(torn), validBytes: Buffer.byteLength(text) } } : {}),
  };
}
