// What sealed run inputs and results are bound to: the HPKE purpose and associated data that the client and the data plane both compute (docs/runs.md).
import { encodeEncryptionContext } from '@airlock/crypto';

/** HPKE purpose of structured task I/O: info `airlock/v1/io`. */
export const IO_SEALING_PURPOSE = 'io';

/**
 * Associated data of a run's inputs, sealed by the client to the data plane's I/O key. It names the
 * project and the task, so inputs sealed for one task cannot be replayed into another task or project.
 */
export function runInputsAad(project: string, taskName: string): Buffer {
  return encodeEncryptionContext({ 'airlock:use': 'run-inputs', 'airlock:project': project, 'airlock:task': taskName });
}

/**
 * Associated data of an action's result, sealed by the data plane to a client's ephemeral key. It
 * names the project, the run and the action, so a relaying control plane cannot pass one run's
 * result off as another's.
 */
export function runResultAad(project: string, runId: string, actionId: string): Buffer {
  return encodeEncryptionContext({ 'airlock:use': 'run-result', 'airlock:project': project, 'airlock:run': runId, 'airlock:action': actionId });
}

/** HPKE purpose of a presigned URL returned sealed to a client: info `airlock/v1/presign`. */
export const PRESIGN_SEALING_PURPOSE = 'presign';

/**
 * Associated data of a presigned URL sealed to a client's ephemeral key (PresignService.Presign). It
 * names what the URL is for, so a relaying control plane cannot hand a client the URL of another
 * object or method.
 */
export function presignAad(project: string, bucket: string, key: string, method: 'GET' | 'PUT'): Buffer {
  return encodeEncryptionContext({ 'airlock:use': 'presign', 'airlock:project': project, 'airlock:bucket': bucket, 'airlock:key': key, 'airlock:method': method });
}
