// A small real ExecutorStorage over a directory, for executor tests: same keys and checks as docs/runs.md's store (digests verified), plaintext instead of sealed inputs.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { AirlockError, writeFileAtomic } from '@airlock/common';
import type { BundleRef, ExecutorStorage } from '@airlock/data-plane';

/** Runs under one directory: `bundles/<project>/<sha256>`, `runs/<project>/<run>/inputs`, `runs/<project>/<run>/actions/<action>/result.json`. */
export class DirectoryStorage implements ExecutorStorage {
  /** When set, every call fails with this code, as the object-store-backed storage does once its KMS key is disabled. */
  failWith: 'KMS_KEY_DISABLED' | 'UNAVAILABLE' | undefined;
  /** Calls to writeResult, in order. */
  readonly written: string[] = [];

  constructor(readonly root: string) {}

  async putBundle(project: string, bytes: Uint8Array): Promise<BundleRef> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await this.putObject(join('bundles', project, sha256), bytes);
    return { sha256, size: bytes.length };
  }

  /** Stores bytes under a bundle's key whatever their digest (a tampered or corrupted object). */
  async putObject(key: string, bytes: Uint8Array): Promise<void> {
    const path = join(this.root, key);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
  }

  async putInputs(project: string, runId: string, inputs: unknown): Promise<string> {
    await this.putObject(join('runs', project, runId, 'inputs'), Buffer.from(JSON.stringify(inputs)));
    return `v1/${project}/${runId}`;
  }

  async result(project: string, runId: string, actionId: string): Promise<Record<string, unknown> | undefined> {
    const text = await readFile(join(this.root, 'runs', project, runId, 'actions', actionId, 'result.json'), 'utf8').catch(() => undefined);
    return text === undefined ? undefined : (JSON.parse(text) as Record<string, unknown>);
  }

  async fetchBundle(project: string, bundle: BundleRef, destination: string): Promise<void> {
    this.check();
    let bytes: Buffer;
    try {
      bytes = await readFile(join(this.root, 'bundles', project, bundle.sha256));
    } catch {
      throw new AirlockError('OBJECT_NOT_FOUND');
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (bytes.length !== bundle.size || sha256 !== bundle.sha256) {
      await rm(destination, { force: true });
      throw new AirlockError('DIGEST_MISMATCH', 'The bundle does not match its digest');
    }
    await writeFile(destination, bytes, { mode: 0o600, flag: 'wx' });
  }

  async readInputs(project: string, runId: string, inputsRef: string): Promise<Buffer | undefined> {
    this.check();
    if (inputsRef === '') return undefined;
    if (inputsRef !== `v1/${project}/${runId}`) throw new AirlockError('INVALID_ARGUMENT', 'inputs_ref does not name this run');
    return readFile(join(this.root, 'runs', project, runId, 'inputs'));
  }

  async writeResult(project: string, runId: string, actionId: string, result: Uint8Array): Promise<void> {
    this.check();
    const path = join(this.root, 'runs', project, runId, 'actions', actionId, 'result.json');
    await mkdir(dirname(path), { recursive: true });
    await writeFileAtomic(path, result);
    this.written.push(actionId);
  }

  private check(): void {
    if (this.failWith !== undefined) throw new AirlockError(this.failWith);
  }
}
