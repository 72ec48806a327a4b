// Atomic file writes: temporary file, fsync, rename, fsync of the directory — a crash leaves the old file or the new one.
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { AirlockError } from './errors.js';

export interface AtomicWriteOptions {
  /** File mode of the new file, applied whatever the process umask. @default 0o600 */
  readonly mode?: number;
  /**
   * Whether the new file must survive a power loss or an OS crash (fsync of the file and of its
   * directory). `false` keeps the write atomic against the process dying — the rename is — but
   * skips both fsyncs, for state that means nothing after a reboot. @default true
   */
  readonly durable?: boolean;
}

/** Replaces `path` with `content` atomically and (unless `durable: false`) durably. Errors become AirlockErrors (DISK_FULL, PERMISSION_DENIED…). */
export async function writeFileAtomic(path: string, content: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const directory = dirname(path);
  const temporary = join(directory, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const durable = options.durable ?? true;
  try {
    const mode = options.mode ?? 0o600;
    const handle = await open(temporary, 'wx', mode);
    try {
      // The plane processes run with umask 077, which would turn a public 0644 file (a CA
      // certificate, an endpoint file) into 0600; the mode asked for is the mode written.
      await handle.chmod(mode);
      await handle.writeFile(content);
      if (durable) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
    if (durable) await syncDirectory(directory);
  } catch (error) {
    await rm(temporary, { force: true }).catch(() => undefined);
    throw AirlockError.from(error);
  }
}

/** Makes a rename or create in `directory` durable. */
export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
