// `airlock demo`: a guided tour of the crypto core on a real file, with measured figures.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AirlockError } from '@airlock/common';
import {
  createEnvelopeDecryptStream,
  createEnvelopeEncryptStream,
  createLocalKeyWrapper,
  decodeEnvelopeHeader,
  openAsf1File,
  readAsf1Header,
  type KeyWrapper,
} from '@airlock/crypto';

export interface DemoOptions {
  readonly size: number;
  readonly dir?: string;
  readonly keep: boolean;
}

const MiB = 1024 * 1024;
const out = (line = ''): void => void process.stdout.write(`${line}\n`);
const mbps = (bytes: number, ms: number): string => `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;

/** Hashes what passes through and reports progress on long files. */
function meter(label: string, total: number, hash: ReturnType<typeof createHash>): Transform {
  let seen = 0;
  let nextReport = 0;
  const interactive = process.stdout.isTTY === true;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      seen += chunk.byteLength;
      if (interactive && seen >= nextReport) {
        process.stdout.write(`\r  ${label}: ${Math.floor((100 * seen) / Math.max(total, 1))}%`);
        nextReport += total / 20;
      }
      callback(null, chunk);
    },
    flush(callback) {
      if (interactive) process.stdout.write('\r\x1b[K');
      callback();
    },
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start };
}

/** Encrypts to a temporary name, then renames: a crash never leaves a partial file under the final name. */
async function encryptFile(source: string, target: string, wrapper: KeyWrapper, context: Record<string, string>, size: number): Promise<string> {
  const hash = createHash('sha256');
  const partial = `${target}.partial`;
  await pipeline(createReadStream(source), meter('encrypting', size, hash), await createEnvelopeEncryptStream({ wrapper, context }), createWriteStream(partial));
  await rename(partial, target);
  return hash.digest('hex');
}

async function decryptFile(source: string, target: string, wrapper: KeyWrapper, context: Record<string, string>, size: number): Promise<string> {
  const hash = createHash('sha256');
  const partial = `${target}.partial`;
  try {
    await pipeline(createReadStream(source), createEnvelopeDecryptStream({ wrapper, context }), meter('decrypting', size, hash), createWriteStream(partial));
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
  await rename(partial, target);
  return hash.digest('hex');
}

export async function runDemo(options: DemoOptions): Promise<void> {
  const size = options.size * MiB;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'airlock-demo-')));
  await mkdir(dir, { recursive: true });
  const plainPath = join(dir, 'report.bin');
  const cipherPath = join(dir, 'report.bin.asf1');
  const backPath = join(dir, 'report.out');

  out('Airlock demo: ASF1 envelope encryption on a real file');
  out(`  working directory: ${dir}`);
  out();

  // A key-encryption key held in memory stands in for a KMS key here; the KMS issue replaces it
  // with customer-managed keys behind the AWS KMS protocol.
  const wrapper = createLocalKeyWrapper({ keyId: 'local:demo-root-key', key: randomBytes(32) });
  const context = { bucket: 'demo', key: 'report.bin' };

  const written = await timed(async () => {
    const handle = await open(plainPath, 'w');
    try {
      const block = randomBytes(MiB);
      for (let i = 0; i < options.size; i++) await handle.write(block);
    } finally {
      await handle.close();
    }
  });
  out(`1. Wrote ${options.size} MiB of random data to report.bin (${written.ms.toFixed(0)} ms).`);

  const enc = await timed(() => encryptFile(plainPath, cipherPath, wrapper, context, size));
  const cipherSize = (await stat(cipherPath)).size;
  const header = readAsf1Header((await readHead(cipherPath)).subarray(0));
  const envelope = decodeEnvelopeHeader(header.keyRef);
  out(`2. Encrypted with a fresh data key, streamed: ${mbps(size, enc.ms)} (${enc.ms.toFixed(0)} ms).`);
  out(`   ciphertext ${cipherSize} bytes, overhead ${cipherSize - size} bytes (${((100 * (cipherSize - size)) / Math.max(size, 1)).toFixed(3)} %)`);
  out(`   header ${header.length} bytes: ASF1 v${header.version}, 64 KiB segments, data key wrapped by "${envelope.keyId}"`);
  out(`   encryption context bound as associated data: ${JSON.stringify(context)}`);

  const dec = await timed(() => decryptFile(cipherPath, backPath, wrapper, context, size));
  const same = dec.value === enc.value;
  out(`3. Decrypted, streamed: ${mbps(size, dec.ms)} (${dec.ms.toFixed(0)} ms). SHA-256 ${same ? 'matches' : 'DIFFERS'}: ${dec.value.slice(0, 16)}…`);
  if (!same) throw new AirlockError('INTERNAL', 'round trip produced different bytes');

  const rangeStart = Math.floor(size / 2) + 12345;
  const rangeEnd = Math.min(size, rangeStart + 1000);
  const ranged = await timed(async () => {
    const { reader, close } = await openAsf1File(cipherPath, {
      context,
      resolveKey: (keyRef) => wrapper.unwrapKey(decodeEnvelopeHeader(keyRef), context),
    });
    try {
      return await reader.read(rangeStart, rangeEnd);
    } finally {
      await close();
    }
  });
  out(`4. Random access: bytes [${rangeStart}, ${rangeEnd}) decrypted in ${ranged.ms.toFixed(1)} ms, touching only the segments they live in.`);

  out('5. Tamper checks (each must fail with a typed error and no plaintext):');
  await expectFailure('   wrong encryption context', () => decryptFile(cipherPath, `${backPath}.x`, wrapper, { ...context, key: 'other.bin' }, size));
  await flipByte(cipherPath, Math.floor(cipherSize / 2));
  await expectFailure('   one bit flipped mid-file ', () => decryptFile(cipherPath, `${backPath}.x`, wrapper, context, size));
  await flipByte(cipherPath, Math.floor(cipherSize / 2));
  const otherKek = createLocalKeyWrapper({ keyId: 'local:demo-root-key', key: randomBytes(32) });
  await expectFailure('   a different root key     ', () => decryptFile(cipherPath, `${backPath}.x`, otherKek, context, size));

  out();
  if (options.keep) {
    out(`Files kept in ${dir}.`);
  } else {
    await rm(dir, { recursive: true, force: true });
    out('Demo files removed (use --keep to keep them).');
  }
  out('Next: `npm test` runs the full suite; docs/formats/asf1.md specifies the format.');
}

async function readHead(path: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(8192);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

async function flipByte(path: string, position: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, position);
    byte[0] = (byte[0] as number) ^ 0x01;
    await handle.write(byte, 0, 1, position);
  } finally {
    await handle.close();
  }
}

async function expectFailure(label: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (error) {
    out(`${label} → refused: ${AirlockError.from(error).code}`);
    return;
  }
  throw new AirlockError('INTERNAL', `${label.trim()} was not detected`);
}
