// The embedded KMS driven by the real AWS CLI v2 (/usr/bin/aws): key lifecycle, kill switch, aliases, rotation and deletion.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestKms, type TestKms } from './helpers.js';

const execFileAsync = promisify(execFile);

/** The Debian AWS CLI v2, not whatever `aws` is first on PATH (possibly a pip v1). */
const AWS_CLI = '/usr/bin/aws';
const CALL_TIMEOUT_MS = 30_000;
/** The CLI exits 254 when the service returned an error. */
const SERVICE_ERROR_EXIT = 254;

let kms: TestKms;
let blobCounter = 0;

async function run(args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  return execFileAsync(AWS_CLI, [...args], { env: kms.awsEnv(), timeout: CALL_TIMEOUT_MS, maxBuffer: 1024 * 1024 });
}

/** Runs `aws kms <args>` against the test server and parses its JSON output (empty output is `{}`). */
async function awsKms(...args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run(['kms', ...args, '--endpoint-url', kms.server.url, '--output', 'json']);
  return stdout.trim() === '' ? {} : (JSON.parse(stdout) as Record<string, unknown>);
}

/** Runs a call that must fail, returning the CLI's exit code and the AWS error type it printed. */
async function awsKmsError(...args: string[]): Promise<{ exitCode: unknown; errorType: string | undefined; operation: string | undefined }> {
  try {
    await awsKms(...args);
  } catch (error) {
    const { code, stderr } = error as { code?: unknown; stderr?: unknown };
    const match = /An error occurred \(([A-Za-z]+)\) when calling the ([A-Za-z]+) operation/.exec(typeof stderr === 'string' ? stderr : '');
    return { exitCode: code, errorType: match?.[1], operation: match?.[2] };
  }
  throw new Error(`aws kms ${args.join(' ')} unexpectedly succeeded`);
}

/** Writes a base64 CiphertextBlob from CLI output to a temp file, for `fileb://`. */
async function blobFile(base64: unknown): Promise<string> {
  expect(typeof base64).toBe('string');
  blobCounter += 1;
  const path = join(kms.dir, `blob-${blobCounter}.bin`);
  await writeFile(path, Buffer.from(base64 as string, 'base64'));
  return `fileb://${path}`;
}

const blobVersion = (base64: unknown): number => Buffer.from(base64 as string, 'base64').readUInt32BE(20);

beforeAll(async () => {
  if (!existsSync(AWS_CLI)) {
    throw new Error(`${AWS_CLI} is missing: these tests need the Debian AWS CLI v2 (package awscli). Run .ci/run, which installs it.`);
  }
  kms = await startTestKms();
  const { stdout, stderr } = await run(['--version']);
  expect(`${stdout}${stderr}`).toMatch(/aws-cli\/2\./);
}, 60_000);

afterAll(async () => {
  await kms?.stop();
});

describe('embedded KMS via the real AWS CLI v2', () => {
  const context = JSON.stringify({ bucket: 'reports', key: 'q3.csv' });
  // Each test works on a key and data key of its own, made through the SDK (quicker than the CLI), so
  // that no test depends on what an earlier one did.
  let keyId = '';
  let keyArn = '';
  let dataKey: { plaintext: string; blobArg: string; blob: string };
  beforeEach(async () => {
    const client = kms.client();
    const key = await client.createKey({ description: 'cli test fixture' });
    ({ keyId, arn: keyArn } = key);
    const generated = await client.generateDataKey(keyId, JSON.parse(context) as Record<string, string>);
    const blob = Buffer.from(generated.ciphertextBlob).toString('base64');
    dataKey = { plaintext: Buffer.from(generated.plaintext).toString('base64'), blob, blobArg: await blobFile(blob) };
  });

  it('create-key → describe-key → generate-data-key → decrypt', async () => {
    const created = (await awsKms('create-key', '--description', 'cli test')).KeyMetadata as Record<string, unknown>;
    const keyId = created.KeyId as string;
    const keyArn = created.Arn as string;
    expect(created).toMatchObject({ KeyState: 'Enabled', Enabled: true, Description: 'cli test', KeyUsage: 'ENCRYPT_DECRYPT' });
    expect(keyArn).toBe(`arn:aws:kms:us-east-1:111122223333:key/${keyId}`);

    const described = (await awsKms('describe-key', '--key-id', keyId)).KeyMetadata as Record<string, unknown>;
    expect(described).toMatchObject({ KeyId: keyId, Arn: keyArn, KeyState: 'Enabled', Enabled: true, KeySpec: 'SYMMETRIC_DEFAULT' });

    const generated = await awsKms('generate-data-key', '--key-id', keyId, '--key-spec', 'AES_256', '--encryption-context', context);
    expect(generated.KeyId).toBe(keyArn);
    const plaintext = generated.Plaintext as string;
    expect(Buffer.from(plaintext, 'base64').byteLength).toBe(32);
    expect(blobVersion(generated.CiphertextBlob)).toBe(1);
    const blobArg = await blobFile(generated.CiphertextBlob);

    const opened = await awsKms('decrypt', '--ciphertext-blob', blobArg, '--encryption-context', context);
    expect(opened.Plaintext).toBe(plaintext);
    expect(opened.KeyId).toBe(keyArn);
  }, 60_000);

  it('disable-key makes decrypt fail with DisabledException; enable-key restores it', async () => {
    expect(await awsKms('disable-key', '--key-id', keyId)).toEqual({});
    const failure = await awsKmsError('decrypt', '--ciphertext-blob', dataKey.blobArg, '--encryption-context', context);
    expect(failure).toEqual({ exitCode: SERVICE_ERROR_EXIT, errorType: 'DisabledException', operation: 'Decrypt' });

    expect(await awsKms('enable-key', '--key-id', keyId)).toEqual({});
    const opened = await awsKms('decrypt', '--ciphertext-blob', dataKey.blobArg, '--encryption-context', context);
    expect(opened.Plaintext).toBe(dataKey.plaintext);
  }, 60_000);

  it('create-alias; describe-key and generate-data-key through the alias', async () => {
    expect(await awsKms('create-alias', '--alias-name', 'alias/cli-test', '--target-key-id', keyId)).toEqual({});
    const described = (await awsKms('describe-key', '--key-id', 'alias/cli-test')).KeyMetadata as Record<string, unknown>;
    expect(described.KeyId).toBe(keyId);
    const generated = await awsKms('generate-data-key', '--key-id', 'alias/cli-test', '--key-spec', 'AES_256');
    expect(generated.KeyId).toBe(keyArn);
    expect(Buffer.from(generated.Plaintext as string, 'base64').byteLength).toBe(32);
  }, 60_000);

  it('after a rotation, blobs made before it still decrypt and new ones use version 2', async () => {
    // The Debian CLI (2.9.x) predates RotateKeyOnDemand (2024), so the rotation itself goes through the SDK.
    const client = kms.client();
    await client.rotateKeyOnDemand(keyId);
    const opened = await awsKms('decrypt', '--ciphertext-blob', dataKey.blobArg, '--encryption-context', context);
    expect(opened.Plaintext).toBe(dataKey.plaintext);
    const fresh = await awsKms('generate-data-key', '--key-id', keyId, '--key-spec', 'AES_256', '--encryption-context', context);
    expect(blobVersion(fresh.CiphertextBlob)).toBe(2);
    expect(blobVersion(dataKey.blob)).toBe(1);
  }, 60_000);

  it('enable-key-rotation → get-key-rotation-status', async () => {
    expect((await awsKms('get-key-rotation-status', '--key-id', keyId)).KeyRotationEnabled).toBe(false);
    expect(await awsKms('enable-key-rotation', '--key-id', keyId)).toEqual({});
    expect((await awsKms('get-key-rotation-status', '--key-id', keyId)).KeyRotationEnabled).toBe(true);
  }, 60_000);

  it('list-keys and list-aliases include the key', async () => {
    await kms.client().createAlias('alias/cli-list', keyId);
    const keys = (await awsKms('list-keys')).Keys as Array<Record<string, unknown>>;
    expect(keys).toContainEqual({ KeyId: keyId, KeyArn: keyArn });
    const aliases = (await awsKms('list-aliases')).Aliases as Array<Record<string, unknown>>;
    expect(aliases).toContainEqual(
      expect.objectContaining({ AliasName: 'alias/cli-list', AliasArn: 'arn:aws:kms:us-east-1:111122223333:alias/cli-list', TargetKeyId: keyId }),
    );
  }, 60_000);

  it('schedule-key-deletion (PendingDeletion) → cancel-key-deletion (Disabled)', async () => {
    const scheduled = await awsKms('schedule-key-deletion', '--key-id', keyId, '--pending-window-in-days', '7');
    expect(scheduled.KeyId).toBe(keyArn);
    expect(typeof scheduled.DeletionDate).toBe('string');
    const deletionDate = Date.parse(scheduled.DeletionDate as string);
    expect(deletionDate).toBeGreaterThan(Date.now() + 6.9 * 24 * 3600 * 1000);
    expect(deletionDate).toBeLessThan(Date.now() + 7.1 * 24 * 3600 * 1000);
    const pending = (await awsKms('describe-key', '--key-id', keyId)).KeyMetadata as Record<string, unknown>;
    expect(pending).toMatchObject({ KeyState: 'PendingDeletion', Enabled: false });

    expect((await awsKms('cancel-key-deletion', '--key-id', keyId)).KeyId).toBe(keyArn);
    const cancelled = (await awsKms('describe-key', '--key-id', keyId)).KeyMetadata as Record<string, unknown>;
    expect(cancelled).toMatchObject({ KeyState: 'Disabled', Enabled: false });
    expect(cancelled.DeletionDate).toBeUndefined();
  }, 60_000);
});
