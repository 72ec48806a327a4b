// Authentication errors a user can act on, with real clients: SigV2 (boto3's 's3' signers, header and presigned) is named as unsupported, and signatures are compared as AWS compares them.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3ServiceException, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
/** Debian's python3-boto3 (.ci/run installs it): its botocore still has the SigV2 signers. */
const PYTHON = '/usr/bin/python3';
const SIGV2_MESSAGE = 'The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.';
const BUCKET = 'auth-errors';
let store: TestObjectStore;

/** Runs a boto3 script against the store; it prints one JSON line. */
async function boto3(script: string): Promise<Record<string, unknown>> {
  const prelude = [
    'import json, sys, boto3, botocore.config, botocore.exceptions',
    'endpoint = sys.argv[1]',
    "def client(signature_version): return boto3.client('s3', endpoint_url=endpoint, config=botocore.config.Config(signature_version=signature_version, s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))",
  ].join('\n');
  const { stdout } = await run(PYTHON, ['-c', `${prelude}\n${script}`, store.server.url], { env: store.awsEnv(), timeout: 60_000 });
  return JSON.parse(stdout.trim()) as Record<string, unknown>;
}

async function curl(url: string): Promise<{ status: number; body: string }> {
  const out = join(store.dir, 'curl.out');
  const { stdout } = await run('curl', ['-sS', '--cacert', store.caPath, '-o', out, '-w', '%{http_code}', url], { timeout: 60_000 });
  return { status: Number(stdout.trim()), body: await readFile(out, 'utf8') };
}

const xmlField = (text: string, name: string): string | undefined => new RegExp(`<${name}>([^<]*)</${name}>`).exec(text)?.[1];

/** Rewrites the signed request just before it is sent (after the SDK's signing). */
function afterSigning(client: S3Client, rewrite: (headers: Record<string, string>) => void): S3Client {
  client.middlewareStack.add(
    (next) => (args) => {
      rewrite((args.request as { headers: Record<string, string> }).headers);
      return next(args);
    },
    { step: 'deserialize', name: 'airlockTestRewriteSigned' },
  );
  return client;
}

async function sdkError(send: Promise<unknown>): Promise<{ name: string; status: number | undefined; message: string }> {
  const error = await send.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(S3ServiceException);
  const e = error as S3ServiceException;
  return { name: e.name, status: e.$metadata.httpStatusCode, message: e.message };
}

beforeAll(async () => {
  await run(PYTHON, ['-c', 'import boto3']).catch(() => {
    throw new Error(`${PYTHON} has no boto3: install the Debian python3-boto3 package (.ci/run does)`);
  });
  store = await startTestObjectStore();
  await store.sdk().send(new CreateBucketCommand({ Bucket: BUCKET }));
  await store.sdk().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'hello.txt', Body: 'hello' }));
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

describe('SigV2', () => {
  it('answers a SigV2 Authorization header (boto3, signature_version s3) with 400 InvalidRequest naming AWS4-HMAC-SHA256', async () => {
    const result = await boto3(
      [
        'try:',
        "    client('s3').get_object(Bucket='auth-errors', Key='hello.txt')",
        "    print(json.dumps({'ok': True}))",
        'except botocore.exceptions.ClientError as e:',
        "    print(json.dumps({'status': e.response['ResponseMetadata']['HTTPStatusCode'], 'code': e.response['Error']['Code'], 'message': e.response['Error']['Message']}))",
      ].join('\n'),
    );
    expect(result).toEqual({ status: 400, code: 'InvalidRequest', message: SIGV2_MESSAGE });
    // The same client signing with SigV4 is served: the refusal is about the mechanism alone.
    const v4 = await boto3("print(json.dumps({'body': client('s3v4').get_object(Bucket='auth-errors', Key='hello.txt')['Body'].read().decode()}))");
    expect(v4).toEqual({ body: 'hello' });
  }, 60_000);

  it('answers a SigV2 presigned URL (AWSAccessKeyId, Signature, Expires) with 400 InvalidRequest', async () => {
    const { url } = (await boto3("print(json.dumps({'url': client('s3').generate_presigned_url('get_object', Params={'Bucket': 'auth-errors', 'Key': 'hello.txt'}, ExpiresIn=300)}))")) as {
      url: string;
    };
    const params = new URL(url).searchParams;
    expect([params.has('AWSAccessKeyId'), params.has('Signature'), params.has('Expires')]).toEqual([true, true, true]);
    const reply = await curl(url);
    expect({ status: reply.status, code: xmlField(reply.body, 'Code'), message: xmlField(reply.body, 'Message') }).toEqual({
      status: 400,
      code: 'InvalidRequest',
      message: SIGV2_MESSAGE,
    });
  }, 60_000);
});

describe('signature comparison', () => {
  it('refuses an upper-cased copy of a valid header signature with 403 SignatureDoesNotMatch', async () => {
    const upper = afterSigning(store.sdk(), (headers) => {
      headers.authorization = (headers.authorization as string).replace(/Signature=([0-9a-f]{64})$/, (_m, signature: string) => `Signature=${signature.toUpperCase()}`);
    });
    const error = await sdkError(upper.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'hello.txt' })));
    expect({ name: error.name, status: error.status }).toEqual({ name: 'SignatureDoesNotMatch', status: 403 });
    // Unchanged, the same request is served.
    const ok = await afterSigning(store.sdk(), () => undefined).send(new GetObjectCommand({ Bucket: BUCKET, Key: 'hello.txt' }));
    expect(await ok.Body?.transformToString()).toBe('hello');
  });

  it('refuses a presigned URL whose signature was upper-cased with 403 SignatureDoesNotMatch', async () => {
    const url = await store.client().presign(BUCKET, 'hello.txt', { method: 'GET', expiresInSeconds: 300 });
    expect((await curl(url)).status).toBe(200);
    const signature = new URL(url).searchParams.get('X-Amz-Signature') as string;
    expect(signature).toMatch(/[a-f]/);
    const reply = await curl(url.replace(`X-Amz-Signature=${signature}`, `X-Amz-Signature=${signature.toUpperCase()}`));
    expect({ status: reply.status, code: xmlField(reply.body, 'Code') }).toEqual({ status: 403, code: 'SignatureDoesNotMatch' });
  });
});
