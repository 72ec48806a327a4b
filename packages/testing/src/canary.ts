// Canary values and a scanner that finds their bytes in files: how tests prove that nothing is stored (or logged) in plaintext.
import { randomBytes } from 'node:crypto';
import { type FileHandle, lstat, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** The forms in which a canary's bytes are searched for. */
export const CANARY_ENCODINGS = ['utf8', 'utf16le', 'base64', 'base64url', 'hex'] as const;
export type CanaryEncoding = (typeof CANARY_ENCODINGS)[number];

export interface ScanForCanaryOptions {
  /**
   * Which forms to look for. A value that is stored "encoded" rather than encrypted (JSON with
   * base64 fields, a hex dump, a UTF-16 string in a binary format) is still plaintext.
   * @default all of CANARY_ENCODINGS
   */
  readonly encodings?: readonly CanaryEncoding[];
}

export interface CanaryHit {
  /** The file, as given or as found under a given directory. */
  readonly path: string;
  /** Byte offset of the match in the file. */
  readonly offset: number;
  /** The form that matched. */
  readonly encoding: CanaryEncoding;
}

export interface CanaryScanResult {
  /** Every match, in file order; empty when the canary is nowhere. */
  readonly hits: CanaryHit[];
  /** Regular files read, so that a test can tell "absent" from "nothing was scanned". */
  readonly filesScanned: number;
  readonly bytesScanned: number;
}

/**
 * A unique ASCII string that cannot occur by chance: a fixed prefix, the label (reduced to
 * [A-Za-z0-9_-]) and 128 random bits in hex. Plain ASCII, so that its UTF-8 bytes are its characters
 * and any encoding of the value stays recognisable.
 */
export function makeCanary(label: string): string {
  const cleaned = label.replace(/[^A-Za-z0-9_-]+/g, '-').slice(0, 40);
  return `airlock-canary-${cleaned}-${randomBytes(16).toString('hex')}`;
}

/** Every byte pattern to look for: one per form, three for base64 (one per alignment), two for hex (case). */
function patternsFor(canary: string, encodings: readonly CanaryEncoding[]): Array<{ readonly bytes: Buffer; readonly encoding: CanaryEncoding }> {
  if (canary.length === 0) throw new Error('scanForCanary: the canary is empty');
  const raw = Buffer.from(canary, 'utf8');
  const patterns: Array<{ bytes: Buffer; encoding: CanaryEncoding }> = [];
  for (const encoding of new Set(encodings)) {
    switch (encoding) {
      case 'utf8':
        patterns.push({ bytes: raw, encoding });
        break;
      case 'utf16le':
        patterns.push({ bytes: Buffer.from(canary, 'utf16le'), encoding });
        break;
      case 'hex':
        patterns.push({ bytes: Buffer.from(raw.toString('hex'), 'latin1'), encoding });
        patterns.push({ bytes: Buffer.from(raw.toString('hex').toUpperCase(), 'latin1'), encoding });
        break;
      case 'base64':
      case 'base64url':
        // The canary may start at any byte offset of the encoded stream; for each of the three
        // alignments keep only the characters whose 6 bits all come from the canary.
        for (let shift = 0; shift < 3; shift += 1) {
          const text = Buffer.concat([Buffer.alloc(shift), raw]).toString(encoding);
          const first = Math.ceil((8 * shift) / 6);
          const end = Math.floor((8 * (shift + raw.length)) / 6);
          patterns.push({ bytes: Buffer.from(text.slice(first, end), 'latin1'), encoding });
        }
        break;
      default:
        throw new Error(`scanForCanary: unknown encoding ${JSON.stringify(encoding satisfies never)}`);
    }
  }
  return patterns;
}

/** Files to scan: each path itself if a regular file, or every regular file below it if a directory. Symbolic links are not followed. */
async function listFiles(path: string, out: string[], given: boolean): Promise<void> {
  let info;
  try {
    info = await lstat(path);
  } catch (error) {
    // A file that vanished while a running server (PostgreSQL's temp files) was walked held nothing to
    // find; a path the test named explicitly must exist, or the scan would pass vacuously.
    if (!given && (error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (info.isDirectory()) {
    const entries = await readdir(path);
    entries.sort();
    for (const entry of entries) await listFiles(join(path, entry), out, false);
  } else if (info.isFile()) {
    out.push(path);
  }
}

const CHUNK_BYTES = 1024 * 1024;

async function scanFile(
  handle: FileHandle,
  path: string,
  patterns: ReadonlyArray<{ readonly bytes: Buffer; readonly encoding: CanaryEncoding }>,
  hits: CanaryHit[],
): Promise<number> {
  const longest = Math.max(...patterns.map((p) => p.bytes.length));
  // Each read keeps the last (longest - 1) bytes of the previous one, so a match across a chunk boundary is found once.
  const buffer = Buffer.alloc(CHUNK_BYTES + longest - 1);
  let carried = 0;
  let fileOffset = 0; // file offset of buffer[0]
  let total = 0;
  const seen = new Set<string>();
  for (;;) {
    const { bytesRead } = await handle.read(buffer, carried, buffer.length - carried, null);
    if (bytesRead === 0) break;
    total += bytesRead;
    const filled = carried + bytesRead;
    const window = buffer.subarray(0, filled);
    for (const [index, { bytes, encoding }] of patterns.entries()) {
      for (let at = window.indexOf(bytes); at !== -1; at = window.indexOf(bytes, at + 1)) {
        const offset = fileOffset + at;
        // A short pattern lying wholly in the carried-over bytes was already reported by the previous read.
        const key = `${index}:${offset}`;
        if (seen.has(key)) continue;
        seen.add(key);
        hits.push({ path, offset, encoding });
      }
    }
    carried = Math.min(longest - 1, filled);
    buffer.copy(buffer, 0, filled - carried, filled);
    fileOffset += filled - carried;
  }
  return total;
}

/**
 * Reads every file under `paths` (a path or a list; directories recursively) and reports each place
 * where the canary's bytes occur, in any of the requested forms. Throws if a path cannot be read:
 * an unreadable file would make "not found" a false negative.
 */
export async function scanForCanary(paths: string | readonly string[], canary: string, options: ScanForCanaryOptions = {}): Promise<CanaryScanResult> {
  const patterns = patternsFor(canary, options.encodings ?? CANARY_ENCODINGS);
  const files: string[] = [];
  for (const path of typeof paths === 'string' ? [paths] : paths) await listFiles(path, files, true);
  const hits: CanaryHit[] = [];
  let bytesScanned = 0;
  let filesScanned = 0;
  for (const file of files) {
    let handle: FileHandle;
    try {
      handle = await open(file, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    try {
      bytesScanned += await scanFile(handle, file, patterns, hits);
      filesScanned += 1;
    } finally {
      await handle.close();
    }
  }
  hits.sort((a, b) => (a.path === b.path ? a.offset - b.offset : a.path < b.path ? -1 : 1));
  return { hits, filesScanned, bytesScanned };
}
