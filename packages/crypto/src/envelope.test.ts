// Envelope encryption: data keys wrapped under a key-encryption key and carried in ASF1 headers.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { readAsf1Header } from './asf1.js';
import {
  createEnvelopeDecryptStream,
  createEnvelopeEncryptStream,
  createLocalKeyWrapper,
  decodeEnvelopeHeader,
  encodeEnvelopeHeader,
  envelopeDecrypt,
  envelopeEncrypt,
  generateDataKey,
} from './envelope.js';

const context = { project: 'p1', secret: 'db-password' };

describe('envelope encryption', () => {
  it('round-trips one-shot and streaming, and the blob names its wrapping key', async () => {
    const wrapper = createLocalKeyWrapper({ keyId: 'local:root', key: randomBytes(32) });
    const plaintext = randomBytes(200_000);
    const blob = await envelopeEncrypt(plaintext, { wrapper, context });
    expect(decodeEnvelopeHeader(readAsf1Header(blob).keyRef).keyId).toBe('local:root');
    expect((await envelopeDecrypt(blob, { wrapper, context })).equals(plaintext)).toBe(true);

    const encrypted = await buffer(Readable.from([plaintext]).pipe(await createEnvelopeEncryptStream({ wrapper, context })));
    const decrypted = await buffer(Readable.from([encrypted]).pipe(createEnvelopeDecryptStream({ wrapper, context })));
    expect(decrypted.equals(plaintext)).toBe(true);
  });

  it('fails to unwrap under another context or another key-encryption key', async () => {
    const wrapper = createLocalKeyWrapper({ keyId: 'local:root', key: randomBytes(32) });
    const blob = await envelopeEncrypt(Buffer.from('secret value'), { wrapper, context });
    await expect(envelopeDecrypt(blob, { wrapper, context: { ...context, secret: 'other' } })).rejects.toMatchObject({
      code: 'KEY_UNWRAP_FAILED',
    });
    const otherKek = createLocalKeyWrapper({ keyId: 'local:root', key: randomBytes(32) });
    await expect(envelopeDecrypt(blob, { wrapper: otherKek, context })).rejects.toMatchObject({ code: 'KEY_UNWRAP_FAILED' });
    const otherId = createLocalKeyWrapper({ keyId: 'local:other', key: randomBytes(32) });
    await expect(envelopeDecrypt(blob, { wrapper: otherId, context })).rejects.toMatchObject({ code: 'KEY_UNWRAP_FAILED' });
  });

  it('a tampered envelope header is rejected', async () => {
    const wrapper = createLocalKeyWrapper({ keyId: 'local:root', key: randomBytes(32) });
    const blob = await envelopeEncrypt(Buffer.from('x'), { wrapper, context });
    const header = readAsf1Header(blob);
    for (let i = 8; i < 8 + header.keyRef.byteLength; i++) {
      const tampered = Buffer.from(blob);
      tampered[i] = (tampered[i] as number) ^ 0x40;
      await expect(envelopeDecrypt(tampered, { wrapper, context })).rejects.toMatchObject({
        code: expect.stringMatching(/^(KEY_UNWRAP_FAILED|CIPHERTEXT_MALFORMED|CIPHERTEXT_AUTH_FAILED)$/) as string,
      });
    }
  });

  it('encodes and decodes envelope headers exactly', () => {
    const wrapped = { keyId: 'arn:aws:kms:us-east-1:000000000000:key/1234', ciphertext: randomBytes(180) };
    const encoded = encodeEnvelopeHeader(wrapped);
    const decoded = decodeEnvelopeHeader(encoded);
    expect(decoded.keyId).toBe(wrapped.keyId);
    expect(Buffer.from(decoded.ciphertext).equals(wrapped.ciphertext)).toBe(true);
    expect(() => decodeEnvelopeHeader(encoded.subarray(0, encoded.length - 1))).toThrow(
      expect.objectContaining({ code: 'CIPHERTEXT_MALFORMED' }) as Error,
    );
    expect(() => decodeEnvelopeHeader(Buffer.concat([encoded, Buffer.from([0])]))).toThrow(
      expect.objectContaining({ code: 'CIPHERTEXT_MALFORMED' }) as Error,
    );
    expect(() => encodeEnvelopeHeader({ keyId: '', ciphertext: randomBytes(1) })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }) as Error,
    );
  });

  it('generates 32-byte data keys whose wrapped form unwraps to the same key', async () => {
    const wrapper = createLocalKeyWrapper({ keyId: 'k', key: randomBytes(32) });
    const dataKey = await generateDataKey(wrapper, context);
    expect(dataKey.plaintext.byteLength).toBe(32);
    expect(Buffer.from(await wrapper.unwrapKey(dataKey.wrapped, context)).equals(dataKey.plaintext)).toBe(true);
    wrapper.dispose();
    await expect(wrapper.unwrapKey(dataKey.wrapped, context)).rejects.toMatchObject({ code: 'KEY_UNWRAP_FAILED' });
  });
});
