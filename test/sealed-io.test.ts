// Cross-plane tests of sealed I/O with a pinned data plane: the agent's signed keys reach the control plane and survive a restart; the control plane calls SealedIoService and PresignService over the real tunnel; no input, output, URL signature or key reaches a log.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createClient, ConnectError } from '@connectrpc/connect';
import { uuidV7 } from '@airlock/common';
import { openActionQueue, openClusterRegistry, startDispatchServer, startTunnelEndpoint, type DispatchServer, type TunnelEndpoint } from '@airlock/control-plane';
import { generateSealingKeyPair, openSealed, seal } from '@airlock/crypto';
import { createRunDataStore, loadOrCreateSealingKeys, openKmsKeyVault, startDataPlaneAgent, tunnelServiceRoutes, type DataPlaneAgent, type RunDataStore } from '@airlock/data-plane';
import { createAwsKms, type KmsAdmin } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig, type KmsServer } from '@airlock/kms/server';
import { createS3ObjectStore } from '@airlock/objectstore';
import { createObjectStoreServer, resolveObjectStoreServerConfig, type ObjectStoreServer } from '@airlock/objectstore/server';
import { createCertificateAuthority, issueServerCertificate, type CertificateKeyPair } from '@airlock/pki';
import {
  fromConnectError,
  PresignMethod,
  PresignService,
  presignAad,
  runInputsAad,
  runResultAad,
  SealedIoService,
  verifyDataPlaneKeys,
} from '@airlock/protocol';
import { captureLogger, makeCanary } from '@airlock/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, openTestDatabase } from './helpers.js';

const run = promisify(execFile);
const CLUSTER = 'sealed-1';

let directory: string;
let ca: CertificateKeyPair;
let kmsServer: KmsServer;
let kms: KmsAdmin & { destroy(): void };
let storeKms: KmsAdmin & { destroy(): void };
let objectServer: ObjectStoreServer;
let objectStore: ReturnType<typeof createS3ObjectStore>;
let dispatch: DispatchServer;
let tunnel: TunnelEndpoint;
let closeControlPlane: (() => Promise<void>) | undefined;
const agentLogs = captureLogger('agent');
const storageLogs = captureLogger('storage');
const controlLogs = captureLogger('control-plane');

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'airlock-sealed-io-'));
  ca = await createCertificateAuthority({ commonName: 'sealed io test CA' });
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  kmsServer = await createKmsServer(resolveKmsServerConfig({ dataDir: join(directory, 'kms'), tls: { cert: tls.cert, key: tls.key }, logger: storageLogs.log }));
  const credentials = kmsServer.createAccessKey('sealed io tests');
  kms = createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  storeKms = createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  objectServer = await createObjectStoreServer(
    resolveObjectStoreServerConfig({
      dataDir: join(directory, 'objects'),
      tls: { cert: tls.cert, key: tls.key },
      kms: storeKms,
      lookupSecret: (id) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined),
      port: 0,
      logger: storageLogs.log,
    }),
  );
  objectStore = createS3ObjectStore({ endpoint: objectServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  await writeFile(join(directory, 'ca.pem'), ca.cert);

  await mkdir(join(directory, 'cp'), { mode: 0o700 });
  const database = await openTestDatabase(join(directory, 'cp'), controlLogs.log);
  const registry = openClusterRegistry({ ca, database, log: controlLogs.log });
  const queue = await openActionQueue({ database, log: controlLogs.log });
  dispatch = await startDispatchServer({ tls: { cert: tls.cert, key: tls.key }, ca: ca.cert, port: 0, registry, queue, log: controlLogs.log, heartbeatIntervalMs: 250 });
  tunnel = await startTunnelEndpoint({
    tls: { cert: tls.cert, key: tls.key },
    ca: ca.cert,
    port: 0,
    log: controlLogs.log,
    isClusterAllowed: (cluster, fingerprint) => registry.isClusterAllowed(cluster, fingerprint),
  });
  closeControlPlane = async () => {
    await Promise.all([dispatch.close(), tunnel.close()]);
    await queue.close();
    await database.close();
  };
  token = (await registry.createBootstrapToken(CLUSTER, 60_000)).token;
}, 60_000);

let token: string | undefined;

afterAll(async () => {
  await closeControlPlane?.();
  objectStore.destroy();
  await objectServer.close();
  storeKms.destroy();
  kms.destroy();
  await kmsServer.close();
  await rm(directory, { recursive: true, force: true });
});

/** Starts the data plane as `airlock data-plane serve` wires it: sealing keys, run-data store, tunnel routes, agent. */
async function startDataPlane(): Promise<{ agent: DataPlaneAgent; runData: RunDataStore; stop(): Promise<void> }> {
  const stateDir = join(directory, 'agent');
  const vault = await openKmsKeyVault(kms, undefined, { create: true });
  const { keys } = await loadOrCreateSealingKeys(stateDir, CLUSTER, { vault, log: agentLogs.log });
  const runData = await createRunDataStore({ objectStore, sealingKeys: keys, log: agentLogs.log });
  const agent = await startDataPlaneAgent({
    clusterName: CLUSTER,
    stateDir,
    keyVault: vault,
    sealingKeys: keys,
    dispatchUrl: dispatch.url,
    tunnelUrl: tunnel.url,
    ca: ca.cert,
    ...(token === undefined ? {} : { bootstrapToken: token }),
    routes: tunnelServiceRoutes({ runData, log: agentLogs.log }),
    log: agentLogs.log,
    backoffMaxMs: 400,
    startTimeoutMs: 5000,
  });
  token = undefined;
  await agent.waitForRegistered(10_000);
  await tunnel.waitForCluster(CLUSTER, 10_000);
  return {
    agent,
    runData,
    async stop() {
      await agent.stop();
      keys.destroy();
    },
  };
}

async function failure(promise: Promise<unknown>): Promise<string> {
  const outcome = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(outcome instanceof ConnectError)) throw new Error(`expected a ConnectError, got ${String(outcome)}`);
  return fromConnectError(outcome).code;
}

describe('sealed I/O through the tunnel', () => {
  it('keys are pinned and relayed, inputs go in sealed, outputs come out sealed to an ephemeral key, bundles upload bound; no canary in any log', async () => {
    const first = await startDataPlane();
    const pin = first.agent.identityFingerprint;
    expect(pin).toMatch(/^sha256:[0-9a-f]{64}$/);

    // The control plane holds the signed keys of the last registration; a client with the pin verifies them.
    const relayed = await eventually('keys relayed', 5000, () => dispatch.agent(CLUSTER)?.keys);
    const verified = verifyDataPlaneKeys(relayed, pin, CLUSTER);
    expect(() => verifyDataPlaneKeys(relayed, `sha256:${'0'.repeat(64)}`, CLUSTER)).toThrow(expect.objectContaining({ code: 'DATA_PLANE_PIN_MISMATCH' }));

    const sealedIo = createClient(SealedIoService, tunnel.transportFor(CLUSTER));
    const presign = createClient(PresignService, tunnel.transportFor(CLUSTER));
    const project = 'team-a';
    const runId = uuidV7();
    const inputsCanary = makeCanary('inputs');
    const sealed = await seal({ recipientPublicKey: verified.ioKey.publicKey, purpose: 'io', plaintext: Buffer.from(JSON.stringify({ name: inputsCanary })), aad: runInputsAad(project, 'hello') });
    const put = await sealedIo.putInputs({ project, runId, task: { project, name: 'hello', version: 'v' }, inputs: { sealed, keyId: verified.ioKey.keyId } });
    expect(put).toMatchObject({ inputsRef: `v1/${project}/${runId}`, sha256: createHash('sha256').update(sealed).digest('hex') });
    // What the executor will read.
    expect(JSON.parse((await first.runData.readInputs(project, runId, put.inputsRef, 'hello'))!.toString())).toEqual({ name: inputsCanary });

    // Typed refusals over the tunnel: tampered, another task, another key id, bad names.
    const tampered = Buffer.from(sealed);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    const other = uuidV7();
    expect(await failure(sealedIo.putInputs({ project, runId: other, task: { name: 'hello' }, inputs: { sealed: tampered, keyId: verified.ioKey.keyId } }))).toBe('CIPHERTEXT_AUTH_FAILED');
    expect(await failure(sealedIo.putInputs({ project, runId: other, task: { name: 'goodbye' }, inputs: { sealed, keyId: verified.ioKey.keyId } }))).toBe('CIPHERTEXT_AUTH_FAILED');
    expect(await failure(sealedIo.putInputs({ project, runId: other, task: { name: 'hello' }, inputs: { sealed, keyId: verified.secretsKey.keyId } }))).toBe('SEALED_WRONG_RECIPIENT');
    expect(await failure(sealedIo.putInputs({ project: 'Team A', runId: other, task: { name: 'hello' }, inputs: { sealed, keyId: verified.ioKey.keyId } }))).toBe('INVALID_ARGUMENT');
    expect(await failure(sealedIo.putInputs({ project, runId: 'run-1', task: { name: 'hello' }, inputs: { sealed, keyId: verified.ioKey.keyId } }))).toBe('INVALID_ARGUMENT');

    // Outputs: sealed to the client's ephemeral key, with the aad naming project, run and action.
    const actionId = uuidV7();
    const outputsCanary = makeCanary('outputs');
    const document = Buffer.from(JSON.stringify({ version: 1, ok: true, attempt: 1, outputs: { greeting: outputsCanary } }));
    await first.runData.writeResult(project, runId, actionId, document);
    const ephemeral = generateSealingKeyPair();
    const got = await sealedIo.getOutputs({ project, runId, actionId, recipientPublicKey: ephemeral.publicKey });
    expect(got.outputs?.keyId).toBe(ephemeral.keyId);
    const opened = await openSealed({ recipientPrivateKey: ephemeral.privateKey, purpose: 'io', sealed: got.outputs!.sealed, aad: runResultAad(project, runId, actionId) });
    expect(opened.equals(document)).toBe(true);
    await expect(openSealed({ recipientPrivateKey: ephemeral.privateKey, purpose: 'io', sealed: got.outputs!.sealed, aad: runResultAad(project, other, actionId) })).rejects.toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
    await expect(openSealed({ recipientPrivateKey: generateSealingKeyPair().privateKey, purpose: 'io', sealed: got.outputs!.sealed, aad: runResultAad(project, runId, actionId) })).rejects.toMatchObject({ code: 'SEALED_WRONG_RECIPIENT' });
    expect(await failure(sealedIo.getOutputs({ project, runId, actionId: uuidV7(), recipientPublicKey: ephemeral.publicKey }))).toBe('NOT_FOUND');
    expect(await failure(sealedIo.getOutputs({ project, runId, actionId, recipientPublicKey: new Uint8Array(5) }))).toBe('INVALID_ARGUMENT');

    // A bundle: an upload URL bound to its digest and size, which curl uses; then already_stored.
    const bundle = Buffer.from(`export default 1; // ${randomBytes(100).toString('hex')}`);
    const sha256 = createHash('sha256').update(bundle).digest('hex');
    const upload = await presign.presignBundleUpload({ project, bundle: { sha256, size: BigInt(bundle.length) }, ttl: { seconds: 60n } });
    expect(upload.alreadyStored).toBe(false);
    const file = join(directory, 'bundle.mjs');
    await writeFile(file, bundle);
    const headers = Object.entries(upload.headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
    const { stdout } = await run('curl', ['-sS', '--cacert', join(directory, 'ca.pem'), '-X', 'PUT', '--data-binary', `@${file}`, '-H', 'Content-Type:', ...headers, '-o', '/dev/null', '-w', '%{http_code}', upload.url]);
    expect(stdout).toBe('200');
    expect((await presign.presignBundleUpload({ project, bundle: { sha256, size: BigInt(bundle.length) } })).alreadyStored).toBe(true);
    expect(await failure(presign.presignBundleUpload({ project, bundle: { sha256, size: 64n * 1024n * 1024n + 1n } }))).toBe('PAYLOAD_TOO_LARGE');

    // Presign: a download URL only sealed to the caller, for the project's files only.
    const fileKey = `files/${project}/report.txt`;
    await objectStore.put('airlock-data', fileKey, 'report');
    const download = await presign.presign({ project, bucket: 'airlock-data', key: fileKey, method: PresignMethod.GET, recipientPublicKey: ephemeral.publicKey });
    expect(download.result.case).toBe('sealedUrl');
    const url = (await openSealed({ recipientPrivateKey: ephemeral.privateKey, purpose: 'presign', sealed: download.result.case === 'sealedUrl' ? download.result.value.sealed : new Uint8Array(), aad: presignAad(project, 'airlock-data', fileKey, 'GET') })).toString();
    expect((await run('curl', ['-sS', '--cacert', join(directory, 'ca.pem'), url])).stdout).toBe('report');
    expect(await failure(presign.presign({ project, bucket: 'airlock-data', key: `runs/${project}/${runId}/inputs`, method: PresignMethod.PUT }))).toBe('ACCESS_DENIED');
    expect(await failure(presign.presign({ project, bucket: 'airlock-data', key: fileKey, method: PresignMethod.GET }))).toBe('INVALID_ARGUMENT');

    // Restart: the same keys, the same pin, the same statement content.
    await first.stop();
    const second = await startDataPlane();
    try {
      expect(second.agent.identityFingerprint).toBe(pin);
      const again = await eventually('keys relayed again', 5000, () => {
        const keys = dispatch.agent(CLUSTER)?.keys;
        return keys !== undefined && keys !== relayed ? keys : undefined;
      });
      const reverified = verifyDataPlaneKeys(again, pin, CLUSTER);
      expect(reverified.ioKey).toEqual(verified.ioKey);
      expect(reverified.secretsKey).toEqual(verified.secretsKey);
      expect(reverified.signedAt.getTime()).toBeGreaterThanOrEqual(verified.signedAt.getTime());
      // Inputs stored before the restart still open.
      expect(JSON.parse((await second.runData.readInputs(project, runId, put.inputsRef, 'hello'))!.toString())).toEqual({ name: inputsCanary });
    } finally {
      await second.stop();
    }

    // The canary: no input, output, URL signature or private key in any log, in any encoding.
    const signature = new URL(upload.url).searchParams.get('X-Amz-Signature')!;
    const urlSignature = new URL(url).searchParams.get('X-Amz-Signature')!;
    const logs = [agentLogs.text(), storageLogs.text(), controlLogs.text()].join('\n');
    expect(agentLogs.lines.some((line) => line.event === 'tunnel.run_data' && line.rpc === 'PutInputs')).toBe(true);
    for (const secret of [inputsCanary, outputsCanary, signature, urlSignature, Buffer.from(inputsCanary).toString('base64'), Buffer.from(outputsCanary).toString('hex')]) {
      expect(logs).not.toContain(secret);
    }
  }, 120_000);
});

