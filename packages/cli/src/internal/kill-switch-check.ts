// The `kms.kill-switch` check of `airlock verify`: a temporary key and bucket, an object, DisableKey, and the time until a GET is refused with KMS.DisabledException.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { AirlockError, failureReason } from '@airlock/common';
import { signRequest } from '@airlock/crypto';
import { createAwsKms } from '@airlock/kms';
import { createS3ObjectStore } from '@airlock/objectstore';
import { tlsClientOptions } from '@airlock/pki';
import { checkResult, type Check, type CheckContext } from '@airlock/verify';
import { parseCredentialsFile } from './kms-client.js';

/** DESIGN §4: reads of data under a disabled key fail within 1 second. */
const BOUND_MS = 1000;
/** How long the check keeps trying a GET after DisableKey before it calls the kill switch broken. */
const GIVE_UP_MS = 5000;

/** One request to the store: its /health (unsigned) or a signed bucket DELETE; resolves with status and body. */
function storeRequest(ctx: CheckContext, url: URL, method: 'GET' | 'DELETE', signed: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ...tlsClientOptions({ ca: ctx.caPem }), method, headers: { host: url.host, ...signed }, agent: false, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new AirlockError('TIMEOUT', 'the object store did not answer')));
    req.on('error', reject);
    req.end();
  });
}

/** The object store's key-event subscription as its /health reports it (`live`, `down`, …), or `unknown`. */
async function storeKeyEvents(ctx: CheckContext, storeUrl: string): Promise<string> {
  try {
    const answer = await storeRequest(ctx, new URL('/health', storeUrl), 'GET');
    const state = (JSON.parse(answer.body) as { keyEvents?: unknown }).keyEvents;
    return typeof state === 'string' ? state : 'unknown';
  } catch {
    return 'unknown';
  }
}

export function killSwitchCheck(): Check {
  const check = { id: 'kms.kill-switch', title: 'Disabling a KMS key refuses reads of its data within 1 s (KMS.DisabledException), and re-enabling restores them' };
  return {
    ...check,
    // A timing: it runs alone, after the concurrent checks, so that their load is not in the figure.
    exclusive: true,
    timeoutMs: 60_000,
    async run(ctx, signal) {
      const kmsEndpoint = ctx.endpointsFile.endpoints.find((e) => e.name === 'kms');
      const storeEndpoint = ctx.endpointsFile.endpoints.find((e) => e.name === 'objectstore');
      if (kmsEndpoint === undefined || storeEndpoint === undefined) {
        return checkResult(check, 'skip', { notRun: true }, { details: 'endpoints.json names no KMS or no object store' });
      }
      const region = ctx.endpointsFile.region;
      const credentials = parseCredentialsFile(await readFile(ctx.endpointsFile.credentials.file, 'utf8'), ctx.endpointsFile.credentials.profile);
      const kms = createAwsKms({ endpoint: kmsEndpoint.url, region, credentials, caBundle: ctx.caPem, maxAttempts: 1 });
      const store = createS3ObjectStore({ endpoint: storeEndpoint.url, region, credentials, caBundle: ctx.caPem, maxAttempts: 1 });
      const bucket = `airlock-verify-kill-switch-${randomBytes(6).toString('hex')}`;
      let keyId: string | undefined;
      let objectWritten = false;
      let bucketCreated = false;
      const get = async (): Promise<void> => {
        const body = await store.get(bucket, 'probe');
        for await (const chunk of body) void chunk;
      };
      try {
        const key = await kms.createKey({ description: 'airlock verify: kill-switch check (temporary; scheduled for deletion when done)' });
        keyId = key.keyId;
        await store.createBucket(bucket, { algorithm: 'aws:kms', kmsKeyId: key.keyId, bucketKeyEnabled: true });
        bucketCreated = true;
        await store.put(bucket, 'probe', randomBytes(1024));
        objectWritten = true;
        await get(); // the store now holds the bucket key in its cache
        const keyEvents = await storeKeyEvents(ctx, storeEndpoint.url);
        await kms.disableKey(key.keyId);
        const returned = performance.now();
        let latencyMs: number | undefined;
        let refusedWith: string | undefined;
        let gets = 0;
        while (performance.now() - returned < GIVE_UP_MS && !signal.aborted) {
          gets++;
          try {
            await get();
          } catch (error) {
            const e = AirlockError.from(error);
            latencyMs = Math.round(performance.now() - returned);
            refusedWith = typeof e.details?.s3ErrorCode === 'string' ? e.details.s3ErrorCode : e.code;
            break;
          }
          await sleep(5);
        }
        await kms.enableKey(key.keyId);
        let restored = false;
        for (let i = 0; i < 100 && !restored; i++) {
          restored = await get().then(
            () => true,
            async () => {
              await sleep(20);
              return false;
            },
          );
        }
        const evidence = {
          latencyMs: latencyMs ?? -1,
          refusedWith: refusedWith ?? 'none',
          eventPathLive: keyEvents === 'live',
          keyEvents,
          getsUntilRefused: gets,
          restored,
        };
        const live = keyEvents === 'live' ? 'event path live' : `event path ${keyEvents}: 1 s cache bound`;
        const summary = latencyMs === undefined ? `no GET refused within ${GIVE_UP_MS} ms of DisableKey (${live})` : `GET refused ${latencyMs} ms after DisableKey returned (${live}); ${restored ? 'restored on EnableKey' : 'NOT restored on EnableKey'}`;
        const failures = [
          ...(latencyMs === undefined || latencyMs > BOUND_MS ? [`reads were not refused within ${BOUND_MS} ms of DisableKey (${latencyMs === undefined ? 'never' : `${latencyMs} ms`})`] : []),
          ...(refusedWith !== undefined && refusedWith !== 'KMS.DisabledException' ? [`the GET was refused with ${refusedWith}, not KMS.DisabledException`] : []),
          ...(restored ? [] : ['re-enabling the key did not restore reads']),
        ];
        return checkResult(check, failures.length === 0 ? 'pass' : 'fail', evidence, { summary, ...(failures.length === 0 ? {} : { details: failures.join('\n') }) });
      } catch (error) {
        return checkResult(check, 'fail', { error: failureReason(error) }, { details: `the check could not run: ${AirlockError.from(error).message}` });
      } finally {
        // Leave nothing behind: the object, the (empty) bucket, and the key (enabled, then scheduled for deletion).
        if (objectWritten) await store.delete(bucket, 'probe').catch(() => undefined);
        if (bucketCreated) {
          const url = new URL(`/${bucket}`, storeEndpoint.url);
          const signed = signRequest({ method: 'DELETE', path: url.pathname, headers: { host: url.host }, credentials, region, service: 's3' });
          await storeRequest(ctx, url, 'DELETE', { ...signed.headers }).catch(() => undefined);
        }
        if (keyId !== undefined) {
          await kms.enableKey(keyId).catch(() => undefined);
          await kms.scheduleKeyDeletion(keyId, 7).catch(() => undefined);
        }
        store.destroy();
        kms.destroy();
      }
    },
  };
}
