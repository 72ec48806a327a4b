// `airlock control-plane rotate-key`: re-wraps the control-plane database's data keys and the sealed CA key under a new control-plane key, without rewriting a row.
import { readFile, rename, rm } from 'node:fs/promises';
import { AirlockError, createLogger, writeFileAtomic, type Logger } from '@airlock/common';
import { openControlPlaneKey, type ControlPlaneDatabase } from '@airlock/control-plane';
import { envelopeDecrypt, envelopeEncrypt } from '@airlock/crypto';
import { stackProcessRunning } from '@airlock/verify';
import { layout, resolveDataDir } from '../internal/data-dir.js';
import { CA_KEY_CONTEXT, controlPlaneRootFromFlags, openLocalControlPlaneKey } from '../internal/local-ca.js';
import { print, printJson } from '../internal/output.js';
import { rootKeySourceFromFlags } from '../internal/root-key-flags.js';
import { openLocalDatabase, type DatabaseFlags } from './control-plane.js';
import { readEndpoints } from './up.js';

export interface RotateKeyOptions extends DatabaseFlags {
  readonly dataDir?: string;
  /** The new key: a root key file (created if missing), an environment variable, or a passphrase's variable. None: a new default key file, replaced in place. */
  readonly toKeyFile?: string;
  readonly toKeyEnv?: string;
  readonly toKeyPassphraseEnv?: string;
  readonly json: boolean;
}

type OpenedKey = Awaited<ReturnType<typeof openControlPlaneKey>>;

/** Throws when a stack or control plane started by `airlock up` still runs from the data directory: it holds the old key's data keys in memory. */
async function refuseWhileRunning(dataDir: string): Promise<void> {
  const running = await readEndpoints(dataDir);
  if (running === undefined) return;
  for (const pid of [running.pid, running.pids?.controlPlane]) {
    if (!(await stackProcessRunning(running, pid))) continue;
    throw new AirlockError('ALREADY_EXISTS', `the stack running from ${dataDir} (pid ${pid}) must be stopped first: \`airlock down --data-dir ${dataDir}\``);
  }
}

/** Opens the database with the first key that opens it (a rotation interrupted after the re-wrap left it under the new key). */
async function openWithEither(dataDir: string, flags: DatabaseFlags, keys: readonly OpenedKey[], log: Logger): Promise<ControlPlaneDatabase> {
  let first: unknown;
  for (const key of keys) {
    try {
      return await openLocalDatabase(dataDir, flags, key, log);
    } catch (error) {
      if (AirlockError.from(error).code !== 'DB_KEY_INVALID') throw error;
      first ??= error;
    }
  }
  throw first;
}

/** Re-seals the CA key under `next`; it may already be (an interrupted rotation). Returns false when the data directory has no sealed CA key. */
async function resealCaKey(dataDir: string, current: OpenedKey, next: OpenedKey): Promise<boolean> {
  const path = layout.caKeySealed(dataDir);
  const sealed = await readFile(path).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw AirlockError.from(error);
  });
  if (sealed === undefined) return false;
  let pem: Buffer | undefined;
  for (const key of [current, next]) {
    pem = await envelopeDecrypt(sealed, { wrapper: key.wrapper, context: CA_KEY_CONTEXT }).catch(() => undefined);
    if (pem !== undefined) break;
  }
  if (pem === undefined) {
    throw new AirlockError('DB_KEY_INVALID', `The CA key in ${path} opens with neither ${current.description} nor ${next.description}`, { details: { path } });
  }
  try {
    await writeFileAtomic(path, await envelopeEncrypt(pem, { wrapper: next.wrapper, context: CA_KEY_CONTEXT }), { mode: 0o600 });
  } finally {
    pem.fill(0);
  }
  return true;
}

export async function runControlPlaneRotateKey(options: RotateKeyOptions): Promise<void> {
  const dataDir = resolveDataDir(options.dataDir);
  const log = createLogger({ name: 'control-plane', level: 'warn' });
  await refuseWhileRunning(dataDir);
  const target = rootKeySourceFromFlags('to-key', { file: options.toKeyFile, env: options.toKeyEnv, passphraseEnv: options.toKeyPassphraseEnv });
  const inPlace = target === undefined;
  if (inPlace && controlPlaneRootFromFlags(options) !== undefined) {
    throw new AirlockError('CONFIG_INVALID', 'name the new key with --to-key-file, --to-key-env or --to-key-passphrase-env when the current one is not the default key file');
  }
  const defaultFile = `${layout.controlPlaneDir(dataDir)}/cp-root.key`;
  // In place: the new key is written beside the old one first, and replaces it only once everything is wrapped under it.
  const nextFile = `${defaultFile}.next`;
  const current = await openLocalControlPlaneKey(dataDir, options, log);
  let next: OpenedKey | undefined;
  try {
    next = await openControlPlaneKey({ dir: layout.controlPlaneDir(dataDir), root: target ?? { file: nextFile } }, log);
    if (next.description === current.description) throw new AirlockError('CONFIG_INVALID', `the new key is the current key (${current.description})`);
    const database = await openWithEither(dataDir, options, [current, next], log);
    let rewrapped: number;
    try {
      rewrapped = await database.rewrapKeys(next);
    } finally {
      await database.close();
    }
    const ca = await resealCaKey(dataDir, current, next);
    if (inPlace) await rename(nextFile, defaultFile);
    const result = { rewrappedDataKeys: rewrapped, caKey: ca, rowsRewritten: 0, from: current.description, to: inPlace ? `root key file ${defaultFile}` : next.description };
    if (options.json) printJson(result);
    else {
      print(`Rotated the control-plane key: ${rewrapped} database data key(s)${ca ? ' and the CA key' : ''} re-wrapped; no row rewritten.`);
      print(`  from ${result.from}`);
      print(`  to   ${result.to}`);
      if (!inPlace) print('Start the control plane with the new key from now on (the same --cp-key-* flag you used for --to-key-*).');
    }
  } catch (error) {
    // A new default key that nothing was wrapped under yet is worthless; one that may already wrap the database is kept for a re-run.
    if (inPlace && next !== undefined && AirlockError.from(error).code === 'CONFIG_INVALID') await rm(nextFile, { force: true });
    throw error;
  } finally {
    current.dispose();
    next?.dispose();
  }
}
