// The data plane's run-data tunnel services: SealedIoService (PutInputs, GetOutputs) and PresignService (PresignBundleUpload, Presign), over the run-data store.
import { durationMs, timestampFromDate, type Duration } from '@bufbuild/protobuf/wkt';
import type { ConnectRouter, HandlerContext } from '@connectrpc/connect';
import { AirlockError, type Logger } from '@airlock/common';
import { PresignMethod, PresignService, SealedIoService, toConnectError } from '@airlock/protocol';
import { checkProjectName, checkRunId, type RunDataStore } from './run-data-store.js';

export interface RunDataServicesOptions {
  readonly runData: RunDataStore;
  /** Gets one line per call: the RPC, the project and ids, the outcome's code. Never a payload, URL or key. */
  readonly log?: Logger;
}

/** Seconds of a Duration; zero or absent means "the default". */
function ttlSeconds(ttl: Duration | undefined): number | undefined {
  if (ttl === undefined) return undefined;
  const ms = durationMs(ttl);
  if (!Number.isFinite(ms) || ms < 0) throw new AirlockError('INVALID_ARGUMENT', 'ttl must not be negative', { details: { argument: 'ttl' } });
  return ms === 0 ? undefined : ms / 1000;
}

function bundleSize(size: bigint): number {
  // A size JavaScript cannot count is above any maximum anyway.
  return size > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(size);
}

/**
 * Registers SealedIoService and PresignService. Handlers throw AirlockErrors, which reach the
 * control plane as typed Connect errors (code and details in the airlock-error header, never a cause).
 */
export function registerRunDataServices(router: ConnectRouter, options: RunDataServicesOptions): ConnectRouter {
  const { runData, log } = options;

  /** Runs a handler: logs the call's outcome (ids and code only) and maps errors to Connect errors. */
  const handle = async <T>(rpc: string, context: HandlerContext, fields: Record<string, unknown>, body: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    try {
      const result = await body();
      log?.info({ event: 'tunnel.run_data', rpc, ...fields, durationMs: Date.now() - started }, 'run-data call served');
      return result;
    } catch (error) {
      const e = AirlockError.from(error);
      log?.warn({ event: 'tunnel.run_data', rpc, ...fields, code: e.code, durationMs: Date.now() - started }, 'run-data call refused');
      if (context.signal.aborted) throw toConnectError(new AirlockError('ABORTED', 'The call was cancelled'));
      throw toConnectError(e);
    }
  };

  router.service(SealedIoService, {
    putInputs(request, context) {
      return handle('PutInputs', context, { project: request.project, runId: request.runId, task: request.task?.name }, async () => {
        const project = checkProjectName(request.project);
        checkRunId(request.runId);
        if (request.task === undefined) throw new AirlockError('INVALID_ARGUMENT', 'task is required', { details: { argument: 'task' } });
        if (request.task.project !== '' && request.task.project !== project) {
          throw new AirlockError('INVALID_ARGUMENT', 'task.project must be the request\'s project', { details: { argument: 'task.project' } });
        }
        if (request.inputs === undefined) throw new AirlockError('INVALID_ARGUMENT', 'inputs are required', { details: { argument: 'inputs' } });
        const stored = await runData.putInputs(project, request.runId, { name: request.task.name }, { sealed: request.inputs.sealed, keyId: request.inputs.keyId });
        return { inputsRef: stored.inputsRef, sha256: stored.sha256 };
      });
    },

    getOutputs(request, context) {
      return handle('GetOutputs', context, { project: request.project, runId: request.runId, actionId: request.actionId }, async () => {
        const project = checkProjectName(request.project);
        checkRunId(request.runId);
        checkRunId(request.actionId, 'action_id');
        if (request.recipientPublicKey.byteLength !== 32) {
          throw new AirlockError('INVALID_ARGUMENT', 'recipient_public_key must be a raw 32-byte X25519 public key', { details: { argument: 'recipient_public_key' } });
        }
        const sealed = await runData.sealResult(project, request.runId, request.actionId, request.recipientPublicKey);
        return { outputs: { sealed: sealed.sealed, keyId: sealed.keyId } };
      });
    },
  });

  router.service(PresignService, {
    presignBundleUpload(request, context) {
      return handle('PresignBundleUpload', context, { project: request.project, bundleSha256: request.bundle?.sha256, size: request.bundle?.size.toString() }, async () => {
        if (request.bundle === undefined) throw new AirlockError('INVALID_ARGUMENT', 'bundle is required', { details: { argument: 'bundle' } });
        const result = await runData.presignBundleUpload(request.project, { sha256: request.bundle.sha256, size: bundleSize(request.bundle.size) }, ttlSeconds(request.ttl));
        if (result.alreadyStored) return { alreadyStored: true };
        return { alreadyStored: false, url: result.url, headers: { ...result.headers }, expiresAt: timestampFromDate(result.expiresAt) };
      });
    },

    presign(request, context) {
      const method = request.method === PresignMethod.GET ? 'GET' : request.method === PresignMethod.PUT ? 'PUT' : undefined;
      return handle('Presign', context, { project: request.project, method: PresignMethod[request.method] ?? 'unknown', sealed: request.recipientPublicKey.byteLength > 0 }, async () => {
        if (method === undefined) throw new AirlockError('INVALID_ARGUMENT', 'method must be GET or PUT', { details: { argument: 'method' } });
        const ttl = ttlSeconds(request.ttl);
        const result = await runData.presignFile({
          project: request.project,
          bucket: request.bucket,
          key: request.key,
          method,
          ...(ttl === undefined ? {} : { ttlSeconds: ttl }),
          ...(request.recipientPublicKey.byteLength === 0 ? {} : { recipientPublicKey: request.recipientPublicKey }),
        });
        const expiresAt = timestampFromDate(result.expiresAt);
        if ('url' in result) return { result: { case: 'url' as const, value: result.url }, expiresAt };
        return { result: { case: 'sealedUrl' as const, value: { sealed: result.sealedUrl.sealed, keyId: result.sealedUrl.keyId } }, expiresAt };
      });
    },
  });
  return router;
}
