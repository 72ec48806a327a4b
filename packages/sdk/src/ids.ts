// Deterministic ids for tasks calling tasks: a child action's id from its parent, task, input digest and call sequence.
import { createHash } from 'node:crypto';
import { AirlockError } from '@airlock/common/errors';
import { canonicalJson } from './internal/canonical-json.js';

/** Domain separation, so these digests never collide with SHA-256 digests made for another purpose. */
const INPUT_DIGEST_DOMAIN = 'airlock/v1/input-digest\n';
const CHILD_ACTION_DOMAIN = 'airlock/v1/child-action\n';

/**
 * The SHA-256 (lowercase hex) of a value's canonical JSON (keys sorted, no whitespace), so inputs
 * that differ only in key order or formatting have the same digest. Throws INVALID_ARGUMENT for
 * values JSON cannot carry exactly (see canonicalJson).
 */
export function inputDigest(value: unknown): string {
  return createHash('sha256').update(INPUT_DIGEST_DOMAIN).update(canonicalJson(value)).digest('hex');
}

/**
 * The id of the `callSequence`-th call (0-based, in the order the parent's code makes calls) that
 * the action `parentActionId` makes to task `taskName` with inputs whose digest is `digest`. It is
 * a pure function, so a re-run of the parent recomputes the same ids and finds the children that
 * already finished. Formatted as an RFC 9562 UUIDv8 (§5.8) whose 122 free bits are the first bits
 * of SHA-256 over the length-prefixed fields, so it fits wherever action ids (UUIDv7) go.
 */
export function childActionId(parentActionId: string, taskName: string, digest: string, callSequence: number): string {
  if (parentActionId.length === 0) throw new AirlockError('INVALID_ARGUMENT', 'childActionId: parentActionId is empty');
  if (taskName.length === 0) throw new AirlockError('INVALID_ARGUMENT', 'childActionId: taskName is empty');
  if (!/^[0-9a-f]{64}$/.test(digest)) throw new AirlockError('INVALID_ARGUMENT', 'childActionId: digest must be 64 lowercase hex digits (see inputDigest)');
  if (!Number.isSafeInteger(callSequence) || callSequence < 0) {
    throw new AirlockError('INVALID_ARGUMENT', 'childActionId: callSequence must be a non-negative integer');
  }
  const hash = createHash('sha256').update(CHILD_ACTION_DOMAIN);
  // Length prefixes keep field boundaries unambiguous ("ab"+"c" differs from "a"+"bc").
  for (const field of [parentActionId, taskName, digest, String(callSequence)]) {
    const bytes = Buffer.from(field, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    hash.update(length).update(bytes);
  }
  const bytes = hash.digest().subarray(0, 16);
  bytes[6] = 0x80 | ((bytes[6] ?? 0) & 0x0f); // version 8
  bytes[8] = 0x80 | ((bytes[8] ?? 0) & 0x3f); // variant 10
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const TASK_VERSION_DOMAIN = 'airlock/v1/task-version\n';

/**
 * A task version: SHA-256 (lowercase hex) over the spec's digest (taskSpecDigest) and the code
 * bundle's SHA-256. The CLI computes it before uploading anything, and the control plane computes
 * it again on RegisterTask, so unchanged code and spec map to the same version and nothing is
 * uploaded twice.
 */
export function taskVersion(specDigest: string, bundleSha256: string): string {
  for (const [name, value] of [['specDigest', specDigest], ['bundleSha256', bundleSha256]] as const) {
    if (!/^[0-9a-f]{64}$/.test(value)) throw new AirlockError('INVALID_ARGUMENT', `taskVersion: ${name} must be 64 lowercase hex digits`);
  }
  return createHash('sha256').update(TASK_VERSION_DOMAIN).update(specDigest).update('\n').update(bundleSha256).digest('hex');
}
