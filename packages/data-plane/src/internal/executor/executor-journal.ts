// The executor's journal of started actions: one small file per action in the state directory, written atomically, so a restarted agent can report and clean up what it lost.
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, type ProcessIdentity } from '@airlock/common';

/** One started action, or (actionId empty, attempt 0) a prepared process no action has taken yet. */
export interface JournalEntry {
  readonly version: 1;
  readonly actionId: string;
  readonly runId: string;
  readonly attempt: number;
  /** The working directory's name under the executor's work root. */
  readonly workDirName: string;
  /** Set once the task's process is started. */
  readonly process?: ProcessIdentity;
}

const ENTRY_NAME = /^[A-Za-z0-9-]{1,100}$/;

/** The journal directory's entries, keyed by the working directory's name (random, chosen by the executor). */
export class ExecutorJournal {
  #created: Promise<unknown> | undefined;

  constructor(private readonly directory: string) {}

  /**
   * Atomic, not durable: the journal tracks processes, and a power loss or an OS crash leaves no
   * process to find (the control plane's lease then ends the attempt). Against the agent dying —
   * what the journal is for — the rename is enough, so each entry costs no fsync.
   */
  async put(entry: JournalEntry): Promise<void> {
    if (!ENTRY_NAME.test(entry.workDirName)) throw new TypeError('journal entry name is not a plain name');
    this.#created ??= mkdir(this.directory, { recursive: true, mode: 0o700 }).catch((error: unknown) => {
      this.#created = undefined;
      throw error;
    });
    await this.#created;
    await writeFileAtomic(join(this.directory, `${entry.workDirName}.json`), `${JSON.stringify(entry)}\n`, { mode: 0o600, durable: false });
  }

  async remove(workDirName: string): Promise<void> {
    if (!ENTRY_NAME.test(workDirName)) return;
    await rm(join(this.directory, `${workDirName}.json`), { force: true });
  }

  /** Every entry; unreadable or malformed files are returned by name only, so they can be removed. */
  async list(): Promise<{ readonly entries: readonly JournalEntry[]; readonly malformed: readonly string[] }> {
    let names: string[];
    try {
      names = await readdir(this.directory);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], malformed: [] };
      throw error;
    }
    const entries: JournalEntry[] = [];
    const malformed: string[] = [];
    for (const name of names) {
      if (!name.endsWith('.json')) {
        // A temporary file of an interrupted atomic write.
        if (name.endsWith('.tmp')) await rm(join(this.directory, name), { force: true });
        continue;
      }
      const entry = parseEntry(await readFile(join(this.directory, name), 'utf8').catch(() => ''));
      if (entry === undefined || `${entry.workDirName}.json` !== name) malformed.push(name);
      else entries.push(entry);
    }
    return { entries, malformed };
  }

  async removeFile(name: string): Promise<void> {
    if (!/^[A-Za-z0-9._-]{1,200}$/.test(name)) return;
    await rm(join(this.directory, name), { force: true });
  }
}

function parseEntry(text: string): JournalEntry | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const entry = value as Record<string, unknown>;
  if (entry.version !== 1 || typeof entry.actionId !== 'string' || typeof entry.runId !== 'string') return undefined;
  if (!Number.isSafeInteger(entry.attempt) || typeof entry.workDirName !== 'string' || !ENTRY_NAME.test(entry.workDirName)) return undefined;
  if (entry.process !== undefined) {
    const identity = entry.process as Record<string, unknown> | null;
    if (typeof identity !== 'object' || identity === null) return undefined;
    if (!Number.isSafeInteger(identity.pid) || (identity.pid as number) < 2) return undefined;
    if (typeof identity.startTime !== 'string' || typeof identity.bootId !== 'string') return undefined;
  }
  return entry as unknown as JournalEntry;
}
