// A search of a live process's whole memory (/proc/<pid>/mem, every readable mapping): what a heap snapshot leaves out, Buffer and other off-heap bytes included.
import { open, readFile } from 'node:fs/promises';
import { AirlockError, failureReason } from '@airlock/common';

/** A byte string to look for, and the name of its encoding to report where it is found. */
export interface MemoryNeedle {
  readonly encoding: string;
  readonly bytes: Buffer;
}

export interface ProcessMemoryScan {
  /** Readable mappings read. */
  readonly regions: number;
  /** Bytes read from them. */
  readonly bytes: number;
  /** Readable mappings the kernel refused to read (EIO: a device or guard mapping); they are counted, not fatal. */
  readonly unreadable: number;
  /** `label (encoding)` for each needle found. */
  readonly found: string[];
}

const CHUNK_BYTES = 8 * 1024 * 1024;
/** Addresses above this are not user memory a Number offset can name exactly ([vsyscall] sits at 0xffffffffff600000). */
const MAX_ADDRESS = 2 ** 53;

interface Mapping {
  readonly start: number;
  readonly end: number;
}

/** The readable mappings of /proc/<pid>/maps, [vvar] and [vsyscall] aside (the kernel's, and unreadable through mem). */
export function readableMappings(maps: string): Mapping[] {
  const mappings: Mapping[] = [];
  for (const line of maps.split('\n')) {
    const match = /^([0-9a-f]+)-([0-9a-f]+) (r)\S* \S+ \S+ \S+\s*(.*)$/u.exec(line);
    if (match === null) continue;
    const name = match[4] ?? '';
    if (name === '[vvar]' || name === '[vsyscall]' || name === '[vvar_vclock]') continue;
    const start = Number.parseInt(match[1] as string, 16);
    const end = Number.parseInt(match[2] as string, 16);
    if (end <= start || end > MAX_ADDRESS) continue;
    mappings.push({ start, end });
  }
  return mappings;
}

/** Reads `length` bytes at `position` into `into` at `offset`; resolves with how many it read (0 at the end). */
export type RegionReader = (into: Buffer, offset: number, length: number, position: number) => Promise<number>;

/**
 * Searches regions read in chunks for needles. The last (longest needle − 1) bytes of each chunk are
 * kept ahead of the next, so a needle split between two reads is still seen whole.
 */
export class ChunkedSearch {
  readonly #needles: readonly MemoryNeedle[];
  readonly #overlap: number;
  readonly #chunkBytes: number;
  readonly #buffer: Buffer;

  constructor(needles: readonly MemoryNeedle[], chunkBytes: number) {
    this.#needles = needles;
    this.#overlap = Math.max(0, ...needles.map((needle) => needle.bytes.length - 1));
    this.#chunkBytes = chunkBytes;
    this.#buffer = Buffer.alloc(chunkBytes + this.#overlap);
  }

  /** Reads [start, end) through `read`; a read that fails ends the region there (a mapping that went away, or EIO). */
  async region(start: number, end: number, read: RegionReader): Promise<{ readonly bytes: number; readonly matched: ReadonlySet<number> }> {
    const matched = new Set<number>();
    let carried = 0;
    let bytes = 0;
    for (let position = start; position < end; ) {
      let count: number;
      try {
        count = await read(this.#buffer, carried, Math.min(this.#chunkBytes, end - position), position);
      } catch {
        break;
      }
      if (count === 0) break;
      bytes += count;
      const window = this.#buffer.subarray(0, carried + count);
      this.#needles.forEach((needle, index) => {
        if (window.includes(needle.bytes)) matched.add(index);
      });
      carried = Math.min(this.#overlap, window.length);
      window.copy(this.#buffer, 0, window.length - carried);
      position += count;
    }
    return { bytes, matched };
  }

  /** Zeroes the read buffer: it held another process's memory. */
  wipe(): void {
    this.#buffer.fill(0);
  }
}

/**
 * Reads every readable mapping of process `pid` through /proc/<pid>/mem and reports which needles
 * occur in it. Needs the right to trace the process (the same user, without a Yama restriction, or
 * root). Throws PERMISSION_DENIED when the memory cannot be opened, NOT_FOUND when the process is gone.
 */
export async function scanProcessMemory(pid: number, needles: readonly MemoryNeedle[], label = `memory of process ${pid}`): Promise<ProcessMemoryScan> {
  let maps: string;
  try {
    maps = await readFile(`/proc/${pid}/maps`, 'utf8');
  } catch (error) {
    throw new AirlockError('NOT_FOUND', `cannot read the memory map of process ${pid}: ${failureReason(error)}`, { cause: error });
  }
  let handle;
  try {
    handle = await open(`/proc/${pid}/mem`, 'r');
  } catch (error) {
    throw new AirlockError('PERMISSION_DENIED', `cannot open the memory of process ${pid} (it takes the right to trace it): ${failureReason(error)}`, { cause: error });
  }
  const search = new ChunkedSearch(needles, CHUNK_BYTES);
  const found = new Set<string>();
  let regions = 0;
  let bytes = 0;
  let unreadable = 0;
  try {
    for (const mapping of readableMappings(maps)) {
      const region = await search.region(mapping.start, mapping.end, (into, offset, length, position) => handle.read(into, offset, length, position).then((read) => read.bytesRead));
      if (region.bytes === 0) unreadable += 1;
      else regions += 1;
      bytes += region.bytes;
      for (const index of region.matched) found.add(`${label} (${needles[index]?.encoding ?? '?'})`);
    }
  } finally {
    await handle.close();
    search.wipe();
  }
  return { regions, bytes, unreadable, found: [...found] };
}
