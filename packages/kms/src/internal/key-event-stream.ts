// The client end of a key-event stream: a SigV4-signed AirlockSubscribeKeyEvents request whose answer is newline-delimited JSON.
import https from 'node:https';
import { AirlockError } from '@airlock/common';
import { signRequest, type SigV4Credentials } from '@airlock/crypto';
import type { KmsKeyEvent, KmsKeyEventHandlers, KmsKeyEventSnapshot, KmsKeyEventSubscription } from '../kms.js';
import { kmsErrorFromWire } from '../wire-errors.js';

export const KEY_EVENTS_TARGET = 'TrentService.AirlockSubscribeKeyEvents';

export interface KeyEventStreamOptions {
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: () => Promise<SigV4Credentials>;
  readonly agent: https.Agent;
  /** How long the stream may take to open (answer and snapshot). */
  readonly openTimeoutMs: number;
  readonly keyIds?: readonly string[];
}

/** Longest line accepted: a snapshot of many keys is the largest. */
const MAX_LINE_BYTES = 4 * 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 64 * 1024;

const STATES = new Set(['Enabled', 'Disabled', 'PendingDeletion', 'Deleted']);

function malformed(what: string): AirlockError {
  return new AirlockError('KMS_UNAVAILABLE', `the KMS sent a malformed key-event stream (${what})`);
}

function isKey(value: unknown): value is { keyId: string; keyArn: string; state: string; version: number } {
  const v = value as Record<string, unknown> | null;
  return typeof v === 'object' && v !== null && typeof v.keyId === 'string' && typeof v.keyArn === 'string' && typeof v.state === 'string' && STATES.has(v.state) && Number.isSafeInteger(v.version);
}

/** Opens one stream; `handlers.onClose` is called exactly once, whatever ends it. */
export function openKeyEventStream(options: KeyEventStreamOptions, handlers: KmsKeyEventHandlers): KmsKeyEventSubscription {
  let request: ReturnType<typeof https.request> | undefined;
  let finished = false;
  let opened = false;
  const openTimer = setTimeout(() => finish(new AirlockError('KMS_UNAVAILABLE', 'the KMS key-event stream did not open in time')), options.openTimeoutMs);
  openTimer.unref();
  const finish = (error: AirlockError | undefined): void => {
    if (finished) return;
    finished = true;
    clearTimeout(openTimer);
    request?.destroy();
    handlers.onClose(error);
  };

  const onLine = (line: string): void => {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw malformed('not JSON');
    }
    if (!opened) {
      if (message.type !== 'hello' || typeof message.epoch !== 'string' || !Number.isSafeInteger(message.seq) || !Number.isSafeInteger(message.heartbeatMs) || !Array.isArray(message.keys) || !message.keys.every(isKey)) {
        throw malformed('no opening snapshot');
      }
      opened = true;
      clearTimeout(openTimer);
      handlers.onSnapshot(message as unknown as KmsKeyEventSnapshot);
      return;
    }
    if (message.type === 'heartbeat' && Number.isSafeInteger(message.seq)) handlers.onHeartbeat(message.seq as number);
    else if (message.type === 'key' && Number.isSafeInteger(message.seq) && typeof message.change === 'string' && isKey(message)) handlers.onEvent(message as unknown as KmsKeyEvent);
    else throw malformed('unknown line type');
  };

  void (async () => {
    const credentials = await options.credentials();
    if (finished) return;
    const url = new URL(options.endpoint);
    const body = JSON.stringify(options.keyIds === undefined ? {} : { KeyIds: options.keyIds });
    const headers: Record<string, string> = { host: url.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': KEY_EVENTS_TARGET };
    const signed = signRequest({ method: 'POST', path: '/', headers, body, credentials, region: options.region, service: 'kms' });
    const req = https.request({
      protocol: 'https:',
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port === '' ? 443 : Number(url.port),
      method: 'POST',
      path: '/',
      agent: options.agent,
      headers: { ...headers, ...signed.headers, 'content-length': String(Buffer.byteLength(body)) },
    });
    request = req;
    req.on('error', (error) => finish(new AirlockError('KMS_UNAVAILABLE', 'the KMS key-event stream broke', { cause: error })));
    req.on('response', (res) => {
      res.on('error', (error) => finish(new AirlockError('KMS_UNAVAILABLE', 'the KMS key-event stream broke', { cause: error })));
      if (res.statusCode !== 200) {
        // A KMS without the extension refuses the operation: say so in one code, whatever its wording.
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (text.length < MAX_ERROR_BODY_BYTES) text += chunk;
        });
        res.on('end', () => {
          let parsed: { __type?: unknown; message?: unknown } = {};
          try {
            parsed = JSON.parse(text) as typeof parsed;
          } catch {
            // not a KMS error body
          }
          const type = typeof parsed.__type === 'string' ? parsed.__type.split('#').at(-1) ?? '' : '';
          const message = typeof parsed.message === 'string' ? parsed.message : `HTTP ${res.statusCode ?? 0}`;
          if (type === 'UnknownOperationException' || type === 'UnsupportedOperationException' || res.statusCode === 404) {
            finish(new AirlockError('KMS_UNSUPPORTED_OPERATION', 'the KMS has no key-event extension', { details: { awsErrorType: type } }));
          } else {
            finish(kmsErrorFromWire(Object.assign(new Error(message), { name: type === '' ? 'KMSInternalException' : type })));
          }
        });
        return;
      }
      if (!String(res.headers['content-type'] ?? '').startsWith('application/x-ndjson')) {
        finish(new AirlockError('KMS_UNSUPPORTED_OPERATION', 'the KMS answered the key-event request with something other than a stream'));
        return;
      }
      res.setEncoding('utf8');
      let buffered = '';
      res.on('data', (chunk: string) => {
        if (finished) return;
        buffered += chunk;
        try {
          let newline = buffered.indexOf('\n');
          while (newline >= 0 && !finished) {
            const line = buffered.slice(0, newline);
            buffered = buffered.slice(newline + 1);
            if (line.length > 0) onLine(line);
            newline = buffered.indexOf('\n');
          }
          if (buffered.length > MAX_LINE_BYTES) throw malformed('line too long');
        } catch (error) {
          finish(AirlockError.from(error));
        }
      });
      res.on('end', () => finish(new AirlockError('KMS_UNAVAILABLE', 'the KMS closed the key-event stream')));
      res.on('close', () => finish(new AirlockError('KMS_UNAVAILABLE', 'the KMS key-event stream closed')));
    });
    req.end(body);
  })().catch((error: unknown) => finish(kmsErrorFromWire(error)));

  return {
    close() {
      finish(undefined);
    },
  };
}
