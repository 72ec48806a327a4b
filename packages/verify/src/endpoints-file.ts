// Reads and validates <data-dir>/endpoints.json, the file `airlock up` writes, and the CA bundle it names.
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { AirlockError, isProcessRunning, type ProcessIdentity } from '@airlock/common';

/** One endpoint a stack serves. */
export interface StackEndpoint {
  /** e.g. `kms`, `objectstore`, `api`, `tunnel`, `dispatch`. */
  readonly name: string;
  readonly plane: 'control' | 'data';
  /** e.g. `https://127.0.0.1:9443`. */
  readonly url: string;
}

/**
 * The parsed endpoints.json. It names files and processes; it never holds a secret value. `pids`
 * arrives once the control plane and the data-plane agent run as processes of their own.
 */
export interface EndpointsFile {
  readonly version: 1;
  readonly region: string;
  /** Path of the data directory's CA certificate (PEM). */
  readonly caBundle: string;
  readonly credentials: { readonly file: string; readonly profile: string };
  readonly endpoints: readonly StackEndpoint[];
  /** The process that ran `airlock up`; its child processes belong to the stack too. */
  readonly pid: number;
  readonly startedAt: string;
  /** Per-plane processes, when the planes run as separate processes. */
  readonly pids?: { readonly controlPlane?: number; readonly dataPlane?: number };
  /** Where the API client token is (the file, never the token). */
  readonly client?: { readonly tokenFile: string };
  /** The control plane's database: which backend, and (SQLite) the files that hold it. Never a URL with credentials. */
  readonly database?: ControlPlaneDatabaseInfo;
  /**
   * How to take a heap snapshot of the control plane: `airlock up` starts it with
   * `--heapsnapshot-signal` and `--diagnostic-dir`, so the canary check can look for data in its
   * memory. Absent when the control plane was started some other way (never signal it then: a
   * process without the flag dies of the signal).
   */
  readonly heapSnapshot?: HeapSnapshotInfo;
  /**
   * The process that keeps the planes' recent log output in memory (`airlock up` itself, which
   * passes it on to its terminal), and how much of it: the canary check searches that memory.
   */
  readonly logTail?: LogTailInfo;
  /**
   * Who each process named above was when the file was written (pid, start time, boot id), so that
   * a pid recycled after a crash is never taken for the stack's (and never signalled). Absent on
   * systems without /proc, and in files written before it existed: then a pid is believed as is.
   */
  readonly processes?: readonly ProcessIdentity[];
}

export interface LogTailInfo {
  readonly pid: number;
  readonly maxBytes: number;
}

export interface HeapSnapshotInfo {
  readonly pid: number;
  readonly signal: 'SIGUSR2';
  /** Where the snapshot files appear (0700). */
  readonly dir: string;
}

export interface ControlPlaneDatabaseInfo {
  readonly backend: 'sqlite' | 'postgres';
  /** e.g. `SQLite /x/control-plane.db (SQLCipher AES-256)`; without credentials. */
  readonly description: string;
  /** SQLite: the database, its WAL and shared memory, and its key file. Empty for PostgreSQL. */
  readonly files: readonly string[];
}

export const ENDPOINTS_FILE_NAME = 'endpoints.json';

function invalid(what: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', `endpoints.json: ${what}`, { details: { argument: 'endpoints.json' } });
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const isPid = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value > 0;

/** Validates the shape of a parsed endpoints.json. Throws INVALID_ARGUMENT naming the first bad field. */
export function parseEndpointsFile(json: unknown): EndpointsFile {
  if (!isRecord(json)) throw invalid('must be a JSON object');
  if (json.version !== 1) throw invalid('version must be 1');
  if (typeof json.region !== 'string') throw invalid('region must be a string');
  if (typeof json.caBundle !== 'string' || json.caBundle.length === 0) throw invalid('caBundle must be a path');
  const credentials = json.credentials;
  if (!isRecord(credentials) || typeof credentials.file !== 'string' || typeof credentials.profile !== 'string') {
    throw invalid('credentials must be {file, profile}');
  }
  if (!Array.isArray(json.endpoints)) throw invalid('endpoints must be an array');
  const endpoints = json.endpoints.map((entry: unknown, index): StackEndpoint => {
    if (!isRecord(entry) || typeof entry.name !== 'string' || entry.name.length === 0) throw invalid(`endpoints[${index}].name must be a non-empty string`);
    if (entry.plane !== 'control' && entry.plane !== 'data') throw invalid(`endpoints[${index}].plane must be "control" or "data"`);
    if (typeof entry.url !== 'string' || !URL.canParse(entry.url)) throw invalid(`endpoints[${index}].url must be a URL`);
    return Object.freeze({ name: entry.name, plane: entry.plane, url: entry.url });
  });
  if (!isPid(json.pid)) throw invalid('pid must be a positive integer');
  if (typeof json.startedAt !== 'string') throw invalid('startedAt must be a string');
  let pids: EndpointsFile['pids'];
  if (json.pids !== undefined) {
    if (!isRecord(json.pids)) throw invalid('pids must be an object');
    const { controlPlane, dataPlane } = json.pids;
    if (controlPlane !== undefined && !isPid(controlPlane)) throw invalid('pids.controlPlane must be a positive integer');
    if (dataPlane !== undefined && !isPid(dataPlane)) throw invalid('pids.dataPlane must be a positive integer');
    pids = Object.freeze({ ...(controlPlane === undefined ? {} : { controlPlane }), ...(dataPlane === undefined ? {} : { dataPlane }) });
  }
  let client: EndpointsFile['client'];
  if (json.client !== undefined) {
    if (!isRecord(json.client) || typeof json.client.tokenFile !== 'string' || json.client.tokenFile.length === 0) throw invalid('client must be {tokenFile}');
    client = Object.freeze({ tokenFile: json.client.tokenFile });
  }
  let database: ControlPlaneDatabaseInfo | undefined;
  if (json.database !== undefined) {
    const value = json.database;
    if (!isRecord(value) || (value.backend !== 'sqlite' && value.backend !== 'postgres') || typeof value.description !== 'string' || !Array.isArray(value.files)) {
      throw invalid('database must be {backend, description, files}');
    }
    const files = value.files.map((file: unknown, index) => {
      if (typeof file !== 'string' || file.length === 0) throw invalid(`database.files[${index}] must be a path`);
      return file;
    });
    database = Object.freeze({ backend: value.backend, description: value.description, files: Object.freeze(files) });
  }
  let heapSnapshot: HeapSnapshotInfo | undefined;
  if (json.heapSnapshot !== undefined) {
    const value = json.heapSnapshot;
    if (!isRecord(value) || !isPid(value.pid) || value.signal !== 'SIGUSR2' || typeof value.dir !== 'string' || value.dir.length === 0) {
      throw invalid('heapSnapshot must be {pid, signal: "SIGUSR2", dir}');
    }
    heapSnapshot = Object.freeze({ pid: value.pid, signal: value.signal, dir: value.dir });
  }
  let logTail: LogTailInfo | undefined;
  if (json.logTail !== undefined) {
    const value = json.logTail;
    if (!isRecord(value) || !isPid(value.pid) || typeof value.maxBytes !== 'number' || !Number.isSafeInteger(value.maxBytes) || value.maxBytes <= 0) {
      throw invalid('logTail must be {pid, maxBytes}');
    }
    logTail = Object.freeze({ pid: value.pid, maxBytes: value.maxBytes });
  }
  let processes: ProcessIdentity[] | undefined;
  if (json.processes !== undefined) {
    if (!Array.isArray(json.processes)) throw invalid('processes must be an array');
    processes = json.processes.map((entry: unknown, index) => {
      if (!isRecord(entry) || !isPid(entry.pid) || typeof entry.startTime !== 'string' || !/^\d+$/.test(entry.startTime) || typeof entry.bootId !== 'string' || entry.bootId.length === 0) {
        throw invalid(`processes[${index}] must be {pid, startTime, bootId}`);
      }
      return Object.freeze({ pid: entry.pid, startTime: entry.startTime, bootId: entry.bootId });
    });
  }
  return Object.freeze({
    version: 1,
    region: json.region,
    caBundle: json.caBundle,
    credentials: Object.freeze({ file: credentials.file, profile: credentials.profile }),
    endpoints: Object.freeze(endpoints),
    pid: json.pid,
    startedAt: json.startedAt,
    ...(pids === undefined ? {} : { pids }),
    ...(client === undefined ? {} : { client }),
    ...(database === undefined ? {} : { database }),
    ...(heapSnapshot === undefined ? {} : { heapSnapshot }),
    ...(logTail === undefined ? {} : { logTail }),
    ...(processes === undefined ? {} : { processes: Object.freeze(processes) }),
  });
}

/**
 * Whether `pid`, named by endpoints.json, still runs as the process the file recorded: a pid whose
 * recorded start time (or boot) no longer matches was recycled for a stranger after the stack went
 * away, and counts as not running. Check this before signalling any pid the file names.
 */
export async function stackProcessRunning(file: Pick<EndpointsFile, 'processes'>, pid: number | undefined): Promise<boolean> {
  if (pid === undefined) return false;
  return isProcessRunning(pid, file.processes?.find((p) => p.pid === pid));
}

/** What every check receives: the stack's endpoints.json, its data directory and its CA certificate. */
export interface CheckContext {
  readonly endpointsFile: EndpointsFile;
  /** Absolute path of the data directory. */
  readonly dataDir: string;
  /** PEM of the data directory's CA (the file endpoints.json names as caBundle). */
  readonly caPem: string;
}

/**
 * Loads the check context from a data directory. Throws NOT_FOUND when there is no endpoints.json
 * (no stack was started there, or it has stopped), INVALID_ARGUMENT when it is malformed.
 */
export async function loadCheckContext(dataDir: string): Promise<CheckContext> {
  const directory = resolve(dataDir);
  const path = resolve(directory, ENDPOINTS_FILE_NAME);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new AirlockError('NOT_FOUND', `no running stack: ${path} does not exist`, { cause: error, details: { path } });
    }
    throw AirlockError.from(error);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new AirlockError('INVALID_ARGUMENT', `endpoints.json: ${path} is not valid JSON`, { cause: error, details: { path } });
  }
  const endpointsFile = parseEndpointsFile(json);
  const caPath = isAbsolute(endpointsFile.caBundle) ? endpointsFile.caBundle : resolve(directory, endpointsFile.caBundle);
  let caPem: string;
  try {
    caPem = await readFile(caPath, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'NOT_FOUND' : AirlockError.from(error).code;
    throw new AirlockError(code, `the CA bundle ${caPath} named in endpoints.json cannot be read`, { cause: error, details: { path: caPath } });
  }
  return Object.freeze({ endpointsFile, dataDir: directory, caPem });
}
