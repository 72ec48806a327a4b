// Benchmark: ASF1 vs a bare node:crypto AES-256-GCM loop vs the AWS Encryption SDK, plus openssl speed.
// Run with `npm run bench:crypto`. Writes bench/results/crypto.md. Not part of `npm test`.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import {
  createAsf1DecryptStream,
  createAsf1EncryptStream,
  decryptAsf1,
  decryptAsf1ToChunks,
  encryptAsf1,
  encryptAsf1ToChunks,
} from '@airlock/crypto';

const MiB = 1024 * 1024;
const SEG = 64 * 1024;
const SIZES = [1 * MiB, 256 * MiB];
/**
 * ABBA rounds per comparison with the bare loop; each letter is a batch of BATCH_1M calls at 1 MiB (≈ 60 ms, long
 * enough that one preemption by another process does not decide a round) and one call at 256 MiB.
 */
const ROUNDS_1M = 15;
const ROUNDS_256M = 11;
const BATCH_1M = 200;
const context = { bucket: 'bench', key: 'object' };

/** Median seconds of `reps` runs of `fn` (after one warm-up run). */
async function time(reps: number, fn: () => unknown): Promise<number> {
  await fn();
  const samples: number[] = [];
  for (let i = 0; i < reps; i++) {
    const start = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] as number;
}

/** Seconds per call of `fn`, over one batch of `batch` calls. */
async function batchTime(batch: number, fn: () => unknown): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < batch; i++) await fn();
  return Number(process.hrtime.bigint() - start) / 1e9 / batch;
}

interface Paired {
  /** Median seconds per call of each, over the rounds. */
  a: number;
  b: number;
  /** Each round's a ÷ b time (b's speed ÷ a's), sorted. */
  ratios: number[];
}

/**
 * Times `a` and `b` alternately: `rounds` rounds, each ABBA (or BAAB, every other round), each letter one batch of
 * `batch` calls, after a warm-up batch of each. Each round's ratio compares runs made back to back, so a change in
 * the machine's load between rounds moves both sides of that round's ratio alike; timed one after the other, on a
 * busy machine, the same ratio came out anywhere from 0.59× to 1.75×.
 */
async function abba(rounds: number, batch: number, a: () => unknown, b: () => unknown): Promise<Paired> {
  await batchTime(batch, a);
  await batchTime(batch, b);
  const as: number[] = [];
  const bs: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? [a, b, b, a] : [b, a, a, b];
    let ta = 0;
    let tb = 0;
    for (const fn of order) {
      const t = await batchTime(batch, fn);
      if (fn === a) ta += t / 2;
      else tb += t / 2;
    }
    as.push(ta);
    bs.push(tb);
    ratios.push(ta / tb);
  }
  ratios.sort((x, y) => x - y);
  return { a: median(as), b: median(bs), ratios };
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** "0.97× (0.93–1.01)": the median of the per-round ratios, and their spread (lowest–highest). */
const ratioCell = (p: Paired): string =>
  `**${median(p.ratios).toFixed(2)}×** (${(p.ratios[0] as number).toFixed(2)}–${(p.ratios.at(-1) as number).toFixed(2)})`;

// --- the floor: one fresh AES-256-GCM cipher per 64 KiB segment and nothing else ------------------
/** Encrypts and discards the output: what Node's AES-GCM can do with per-segment ciphers. */
function bareEncrypt(key: Buffer, plaintext: Buffer): number {
  const nonce = Buffer.alloc(12);
  let bytes = 0;
  for (let offset = 0, i = 0; offset < plaintext.byteLength || i === 0; offset += SEG, i++) {
    nonce.writeUInt32BE(i, 7);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    bytes += cipher.update(plaintext.subarray(offset, offset + SEG)).byteLength;
    cipher.final();
    bytes += cipher.getAuthTag().byteLength;
  }
  return bytes;
}

/** The same loop, keeping the segments (input for bareDecrypt). */
function bareEncryptKeep(key: Buffer, plaintext: Buffer): Buffer[] {
  const out: Buffer[] = [];
  const nonce = Buffer.alloc(12);
  for (let offset = 0, i = 0; offset < plaintext.byteLength || i === 0; offset += SEG, i++) {
    nonce.writeUInt32BE(i, 7);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    out.push(cipher.update(plaintext.subarray(offset, offset + SEG)));
    cipher.final();
    out.push(cipher.getAuthTag());
  }
  return out;
}

/** Decrypts segments laid out contiguously (ciphertext ‖ tag, …), as stored, reading them as views. */
function bareDecrypt(key: Buffer, blob: Buffer): number {
  const nonce = Buffer.alloc(12);
  let bytes = 0;
  for (let offset = 0, i = 0; offset < blob.byteLength; offset += SEG + 16, i++) {
    nonce.writeUInt32BE(i, 7);
    const end = Math.min(offset + SEG + 16, blob.byteLength);
    const decipher = createDecipheriv('aes-256-gcm', key, nonce);
    decipher.setAuthTag(blob.subarray(end - 16, end));
    bytes += decipher.update(blob.subarray(offset, end - 16)).byteLength;
    decipher.final();
  }
  return bytes;
}

/** The bare loop as a Transform over 64 KiB chunks: the floor for any streaming encryptor. */
function bareEncryptTransform(key: Buffer): Transform {
  const nonce = Buffer.alloc(12);
  let i = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      nonce.writeUInt32BE(i++, 7);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      this.push(cipher.update(chunk));
      cipher.final();
      callback(null, cipher.getAuthTag());
    },
  });
}

function chunksOf(buffer: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let offset = 0; offset < buffer.byteLength; offset += size) out.push(buffer.subarray(offset, offset + size));
  return out;
}

const sink = (): Writable =>
  new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
    writev(_chunks, callback) {
      callback();
    },
  });

function openssl(): { line: string; bytesPerSecond: number } {
  try {
    const output = execFileSync('openssl', ['speed', '-evp', 'aes-256-gcm', '-bytes', String(SEG), '-seconds', '3'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const line = output.split('\n').find((l) => l.startsWith('AES-256-GCM')) ?? '';
    const kBps = Number(line.trim().split(/\s+/).at(-1)?.replace(/k$/, ''));
    return { line: line.trim(), bytesPerSecond: kBps * 1000 };
  } catch {
    return { line: 'openssl speed unavailable', bytesPerSecond: NaN };
  }
}

/** Streams `total` bytes through an ASF1 encryptor and decryptor without holding them, sampling RSS. */
async function streamingMemory(total: number): Promise<{ baselineMiB: number; peakMiB: number; samples: number }> {
  const key = randomBytes(32);
  const block = randomBytes(MiB);
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  let samples = 0;
  let writes = 0;
  let sent = 0;
  const source = new Readable({
    read() {
      if (sent >= total) {
        this.push(null);
        return;
      }
      for (let o = 0; o < MiB; o += SEG) this.push(block.subarray(o, o + SEG));
      sent += MiB;
    },
  });
  const sampler = new Writable({
    write(_chunk, _encoding, callback) {
      if (writes++ % 16 === 0) {
        peak = Math.max(peak, process.memoryUsage.rss());
        samples++;
      }
      callback();
    },
  });
  await pipeline(source, createAsf1EncryptStream({ key, context }), createAsf1DecryptStream({ key, context }), sampler);
  return { baselineMiB: baseline / MiB, peakMiB: Math.max(peak, process.memoryUsage.rss()) / MiB, samples };
}

const mbpsOf = (size: number, seconds: number): number => size / seconds / 1e6;

async function main(): Promise<void> {
  if (process.argv.includes('--memory')) {
    const total = Number(process.argv[process.argv.indexOf('--memory') + 1]);
    console.log(JSON.stringify(await streamingMemory(total)));
    return;
  }
  const key = randomBytes(32);
  const esdk = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
  const keyring = new RawAesKeyringNode({
    keyName: 'bench-key',
    keyNamespace: 'bench',
    unencryptedMasterKey: new Uint8Array(randomBytes(32)),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
  });
  const suites = {
    // The SDK's default: key commitment plus an ECDSA P-384 signature per message.
    default: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
    // Key commitment without a signature: the suite with ASF1's guarantees.
    commitOnly: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
  };

  const core: string[] = [];
  const shapes: string[] = [];
  const peers: string[] = [];
  const summary: string[] = [];
  for (const size of SIZES) {
    const reps = size <= MiB ? 300 : 7;
    const esdkReps = size <= MiB ? 50 : 3;
    const plaintext = randomBytes(size);
    const label = `${size / MiB} MiB`;
    const f = (seconds: number): string => mbpsOf(size, seconds).toFixed(0);
    const r = (floor: number, measured: number): string => (floor / measured).toFixed(2);

    const rounds = size <= MiB ? ROUNDS_1M : ROUNDS_256M;
    const batch = size <= MiB ? BATCH_1M : 1;
    const bareBlob = Buffer.concat(bareEncryptKeep(key, plaintext));
    const blob = encryptAsf1(plaintext, { key, context });
    const inChunks = chunksOf(plaintext, SEG);
    const blobChunks = chunksOf(blob, SEG);
    const vectoredEnc = () => encryptAsf1ToChunks(plaintext, { key, context });
    const vectoredDec = () => decryptAsf1ToChunks(blob, { key, context });
    const streamEncOnce = () => pipeline(Readable.from(inChunks), createAsf1EncryptStream({ key, context }), sink());
    const streamDecOnce = () => pipeline(Readable.from(blobChunks), createAsf1DecryptStream({ key, context }), sink());
    // The form Airlock uses at each size: whole buffers (vectored) for small blobs, streams for large ones.
    const [formEnc, formDec, form] = size <= MiB ? [vectoredEnc, vectoredDec, 'vectored one-shot'] : [streamEncOnce, streamDecOnce, 'stream'];
    const enc = await abba(rounds, batch, () => bareEncrypt(key, plaintext), formEnc);
    const dec = await abba(rounds, batch, () => bareDecrypt(key, bareBlob), formDec);
    core.push(
      `| ${label} | encrypt | ${f(enc.a)} | ${form} | ${f(enc.b)} | ${ratioCell(enc)} |`,
      `| ${label} | decrypt | ${f(dec.a)} | ${form} | ${f(dec.b)} | ${ratioCell(dec)} |`,
    );
    const bareStream = () => pipeline(Readable.from(inChunks), bareEncryptTransform(key), sink());
    const sEncPaired = await abba(rounds, batch, bareStream, streamEncOnce);
    const sDecPaired = await abba(rounds, batch, bareStream, streamDecOnce);
    const [streamEnc, streamDec] = [sEncPaired.b, sDecPaired.b];
    const [coreEnc, coreDec] = size <= MiB ? [enc.b, dec.b] : [await time(reps, vectoredEnc), await time(reps, vectoredDec)];

    const contEnc = await time(reps, () => encryptAsf1(plaintext, { key, context }));
    const contDec = await time(reps, () => decryptAsf1(blob, { key, context }));
    shapes.push(
      `| ${label} | ${f(coreEnc)} / ${f(coreDec)} | ${f(contEnc)} / ${f(contDec)} | ${f(median([sEncPaired.a, sDecPaired.a]))} | ${f(streamEnc)} / ${f(streamDec)} (${ratioCell(sEncPaired)} / ${ratioCell(sDecPaired)}) |`,
    );

    for (const [name, suiteId] of Object.entries(suites)) {
      const enc = await time(esdkReps, () => esdk.encrypt(keyring, plaintext, { encryptionContext: context, frameLength: SEG, suiteId }));
      const { result } = await esdk.encrypt(keyring, plaintext, { encryptionContext: context, frameLength: SEG, suiteId });
      const dec = await time(esdkReps, () => esdk.decrypt(keyring, result));
      const sEnc = await time(esdkReps, () =>
        pipeline(Readable.from(inChunks), esdk.encryptStream(keyring, { encryptionContext: context, frameLength: SEG, suiteId }), sink()),
      );
      const resultChunks = chunksOf(result, SEG);
      const decryptStream = (): NodeJS.ReadWriteStream =>
        name === 'default' ? esdk.decryptStream(keyring) : esdk.decryptUnsignedMessageStream(keyring);
      const sDec = await time(esdkReps, () => pipeline(Readable.from(resultChunks), decryptStream(), sink()));
      peers.push(
        `| ${label} | ${name === 'default' ? 'default (commit + ECDSA P-384)' : 'commit-only'} | buffer | ${f(enc)} / ${f(dec)} | ${f(contEnc)} / ${f(contDec)} | **${r(enc, contEnc)}× / ${r(dec, contDec)}×** |`,
        `| ${label} | ${name === 'default' ? 'default (commit + ECDSA P-384)' : 'commit-only'} | stream | ${f(sEnc)} / ${f(sDec)} | ${f(streamEnc)} / ${f(streamDec)} | **${r(sEnc, streamEnc)}× / ${r(sDec, streamDec)}×** |`,
      );
      summary.push(
        `${label} vs ESDK ${name}: buffer ${r(enc, contEnc)}× / ${r(dec, contDec)}×, stream ${r(sEnc, streamEnc)}× / ${r(sDec, streamDec)}× (encrypt / decrypt)`,
      );
    }
    summary.push(
      `${label}: ASF1 (${form}) ${median(enc.ratios).toFixed(2)}× encrypt and ${median(dec.ratios).toFixed(2)}× decrypt of the bare loop (median of ${rounds} ABBA rounds; spread ${enc.ratios[0]?.toFixed(2)}–${enc.ratios.at(-1)?.toFixed(2)} and ${dec.ratios[0]?.toFixed(2)}–${dec.ratios.at(-1)?.toFixed(2)})`,
    );
    console.error(summary.slice(-3).join('\n'));
  }

  const ssl = openssl();
  const memory = [256 * MiB, 1024 * MiB].map((total) => {
    const output = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--memory', String(total)], {
      encoding: 'utf8',
    });
    return { total, ...(JSON.parse(output.trim().split('\n').at(-1) as string) as Awaited<ReturnType<typeof streamingMemory>>) };
  });

  const report = `# Crypto benchmark: ASF1

Generated by \`npm run bench:crypto\` (bench/crypto.ts) on ${new Date().toISOString()}, all rows in one run.
Machine: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, OpenSSL ${process.versions.openssl}.
Figures are MB/s of plaintext (10^6 bytes/s). Comparisons with the bare loop are timed alternately: ${ROUNDS_1M} rounds at 1 MiB
(each ABBA, every other one BAAB, each letter a batch of ${BATCH_1M} calls) and ${ROUNDS_256M} at 256 MiB (each letter one call), after a
warm-up of both; MB/s cells are the medians over the rounds, and ratio cells the median of the rounds' own ratios with
their spread (lowest–highest) in brackets. The machine has ${cpus().length} cores shared with other work, so the spread is
part of the result: a single round, or one side timed after the other, says little. Other cells are the median of
repeated runs (300 at 1 MiB, 7 at 256 MiB; 50 and 3 for the ESDK).

## ASF1 against the bare loop

The **bare loop** is \`node:crypto\` AES-256-GCM with one fresh cipher per 64 KiB segment, output discarded:
the most Node can do. ASF1 does the same work plus its header, HKDF stream key, key commitment,
nonces and tag checks, in the form Airlock uses at each size: whole buffers at 1 MiB
(\`encryptAsf1ToChunks\` / \`decryptAsf1ToChunks\`, output kept as pieces for \`writev\`), streams at
256 MiB (\`createAsf1EncryptStream\` / \`createAsf1DecryptStream\` into a discarding sink, as the
object store streams to disk). Keeping 256 MiB of output in memory instead costs page faults and
allocation, not cryptography (next table).

| size | op | bare loop | ASF1 form | ASF1 | ASF1 ÷ bare, median (spread) (target ≥ 0.85) |
|---|---|---|---|---|---|
${core.join('\n')}

## Other API shapes

Contiguous one-shot (\`encryptAsf1\`/\`decryptAsf1\`) pays one extra copy to join the segments.
Streams pay Node's per-chunk stream machinery; their floor is the bare loop as a \`Transform\` in
the same \`pipeline\` (64 KiB chunks in, a discarding sink out), timed ABBA against each ASF1 stream.

| size | vectored one-shot (enc / dec) | contiguous one-shot (enc / dec) | bare loop as Transform | ASF1 streams (enc / dec, ÷ floor) |
|---|---|---|---|---|
${shapes.join('\n')}

## Against the AWS Encryption SDK for JavaScript

\`@aws-crypto/client-node\` 5.x, raw AES keyring, 64 KiB frames, each API shape against ASF1's same
shape (buffer: \`encrypt\`/\`decrypt\` vs \`encryptAsf1\`/\`decryptAsf1\`; stream: \`encryptStream\`/
\`decryptStream\` vs ASF1's Transforms). The default suite signs every message with ECDSA P-384;
the commit-only suite has ASF1's guarantees (key commitment, no signature). Cells: encrypt / decrypt MB/s.

| size | ESDK suite | API | ESDK | ASF1 | ASF1 speed-up |
|---|---|---|---|---|---|
${peers.join('\n')}

Target: ASF1 ≥ 4× the ESDK at both sizes.

## Physical limit

\`openssl speed -evp aes-256-gcm -bytes 65536 -seconds 3\` on one core: \`${ssl.line}\`
→ **${(ssl.bytesPerSecond / 1e6).toFixed(0)} MB/s**. ASF1 core as a fraction of it:
${core.map((row) => {
  const cells = row.split('|').map((c) => c.trim());
  return `${cells[1]} ${cells[2]} ${(Number(cells[5]) / (ssl.bytesPerSecond / 1e6)).toFixed(2)}×`;
}).join('; ')}. Node's per-call cipher setup (a fresh \`createCipheriv\` per
segment, the same in the bare loop) is the gap between Node and the physical limit.

## Memory while streaming

Encrypt → decrypt pipeline in a fresh process, data generated on the fly from one 1 MiB block,
RSS sampled on every 16th chunk reaching the sink. Flat means the peak does not grow with length.

| streamed | baseline RSS | peak RSS | growth |
|---|---|---|---|
${memory.map((m) => `| ${m.total / MiB} MiB | ${m.baselineMiB.toFixed(0)} MiB | ${m.peakMiB.toFixed(0)} MiB | +${(m.peakMiB - m.baselineMiB).toFixed(1)} MiB (${m.samples} samples) |`).join('\n')}

## Summary

${summary.map((line) => `- ${line}`).join('\n')}
`;
  const out = fileURLToPath(new URL('./results/crypto.md', import.meta.url));
  mkdirSync(fileURLToPath(new URL('./results/', import.meta.url)), { recursive: true });
  writeFileSync(out, report);
  console.log(report);
}

await main();
