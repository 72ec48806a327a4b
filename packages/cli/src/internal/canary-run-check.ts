// The `runs.canary` check of `airlock verify`: a run whose inputs and outputs carry a fresh canary, then a search for that canary in everything the control plane keeps (its files and its memory).
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AirlockError, failureReason } from '@airlock/common';
import { ActionPhase } from '@airlock/protocol';
import { checkResult, scanProcessMemory, stackProcessRunning, type Check, type CheckContext, type HeapSnapshotInfo, type ProcessMemoryScan } from '@airlock/verify';
import { fetchResult, prepareTask, submitRun, watchUntilDone } from '../commands/runs.js';
import { connectApi } from './api-client.js';
import { loadClientConfig } from './client-config.js';
import { layout } from './data-dir.js';

const TASK_NAME = 'airlock-verify-canary';

/**
 * The canary task. It uses a hand-written Standard Schema (with its JSON Schema), so it needs
 * nothing but @airlock/sdk, which the CLI carries.
 */
const CANARY_TASK_MODULE = `import { task } from '@airlock/sdk';
const shape = { type: 'object', properties: { canary: { type: 'string', minLength: 1 } }, required: ['canary'], additionalProperties: false };
const canarySchema = {
  '~standard': {
    version: 1,
    vendor: 'airlock-verify',
    validate: (value) => (typeof value === 'object' && value !== null && typeof value.canary === 'string' && value.canary.length > 0
      ? { value: { canary: value.canary } }
      : { issues: [{ message: 'canary must be a non-empty string', path: ['canary'] }] }),
    jsonSchema: { input: () => shape, output: () => shape },
  },
};
export const canary = task(
  { name: '${TASK_NAME}', description: 'airlock verify: echoes a canary through sealed inputs and outputs', inputs: canarySchema, outputs: canarySchema, timeout: '60s' },
  async ({ canary }) => ({ canary }),
);
`;

/** Scans the live memory of `pid` for the needles, if it still runs as the process endpoints.json recorded; otherwise (or when it cannot be read) says why not. */
async function scanStackMemory(
  ctx: CheckContext,
  pid: number | undefined,
  needles: Parameters<typeof scanProcessMemory>[1],
  label: string,
  notRunning: string,
): Promise<{ scan: ProcessMemoryScan; notRead?: undefined } | { scan?: undefined; notRead: string }> {
  if (pid === undefined || !(await stackProcessRunning(ctx.endpointsFile, pid))) return { notRead: notRunning };
  try {
    return { scan: await scanProcessMemory(pid, needles, label) };
  } catch (error) {
    return { notRead: failureReason(error) };
  }
}

/** The forms a canary could take in a file: as text (UTF-8, UTF-16), hex, and base64 at each alignment. */
export function canaryNeedles(canary: string): Array<{ readonly encoding: string; readonly bytes: Buffer }> {
  const utf8 = Buffer.from(canary, 'utf8');
  const needles = [
    { encoding: 'utf-8', bytes: utf8 },
    { encoding: 'utf-16le', bytes: Buffer.from(canary, 'utf16le') },
    { encoding: 'hex', bytes: Buffer.from(utf8.toString('hex')) },
  ];
  for (let shift = 0; shift < 3; shift += 1) {
    // The part of base64(prefix ‖ canary) that depends only on the canary, whatever comes before it.
    const encoded = Buffer.concat([Buffer.alloc(shift), utf8]).toString('base64');
    const start = Math.ceil((shift * 4) / 3) + (shift === 0 ? 0 : 1);
    const end = encoded.length - 4;
    if (end - start >= 8) needles.push({ encoding: `base64+${shift}`, bytes: Buffer.from(encoded.slice(start, end)) });
  }
  return needles;
}

/** Where the canary was found, as `path (encoding)`; empty when nowhere. */
function findCanary(path: string, bytes: Buffer, needles: ReturnType<typeof canaryNeedles>): string[] {
  return needles.filter((needle) => bytes.includes(needle.bytes)).map((needle) => `${path} (${needle.encoding})`);
}

async function filesUnder(dir: string, skip: string): Promise<string[]> {
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  const files: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    if (path.startsWith(skip)) continue;
    if ((await stat(path).catch(() => undefined))?.isFile() === true) files.push(path);
  }
  return files;
}

/**
 * Every file under the data directory's control-plane directory (its database, WAL, keys, endpoint
 * file; heap snapshots aside), searched for the canary in each of its encodings.
 */
export async function scanControlPlaneFiles(dataDir: string, canary: string): Promise<{ looked: string[]; scannedBytes: number; found: string[] }> {
  const needles = canaryNeedles(canary);
  const looked: string[] = [];
  const found: string[] = [];
  let scannedBytes = 0;
  for (const path of await filesUnder(layout.controlPlaneDir(dataDir), layout.controlPlaneDiagnostics(dataDir))) {
    const bytes = await readFile(path).catch(() => undefined);
    if (bytes === undefined) continue;
    scannedBytes += bytes.length;
    looked.push(path);
    found.push(...findCanary(path, bytes, needles));
  }
  return { looked, scannedBytes, found };
}

/** The last `length` bytes of a file of `size` bytes, read without loading the rest. */
async function tailOf(path: string, size: number, length: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(Math.min(length, size));
    await handle.read(buffer, 0, buffer.length, size - buffer.length);
    return buffer;
  } finally {
    await handle.close();
  }
}

/** Signals the control plane for a heap snapshot and waits until the file is complete; returns its path. */
export async function takeHeapSnapshot(info: HeapSnapshotInfo, signal: AbortSignal): Promise<string> {
  const before = new Set(await readdir(info.dir));
  process.kill(info.pid, info.signal);
  let candidate: string | undefined;
  let lastSize = -1;
  for (let waited = 0; waited < 60_000 && !signal.aborted; waited += 250) {
    await sleep(250);
    candidate ??= (await readdir(info.dir)).find((name) => name.endsWith('.heapsnapshot') && !before.has(name));
    if (candidate === undefined) continue;
    const path = join(info.dir, candidate);
    const size = (await stat(path)).size;
    // V8 writes the snapshot as one JSON document: it is complete once it stops growing and ends with its closing brace.
    if (size > 0 && size === lastSize && (await tailOf(path, size, 4)).toString('latin1').trimEnd().endsWith('}')) return path;
    lastSize = size;
  }
  throw new AirlockError('TIMEOUT', `the control plane (pid ${info.pid}) wrote no heap snapshot in ${info.dir} within 60 s`);
}

/** `runs.canary`: the control plane never holds a run's inputs or outputs in the clear, on disk or in memory. */
export function canaryRunCheck(): Check {
  const check = { id: 'runs.canary', title: "a run's inputs and outputs never reach the control plane's files or memory in the clear" };
  return {
    ...check,
    exclusive: true,
    timeoutMs: 180_000,
    async run(ctx: CheckContext, signal: AbortSignal) {
      const canary = `airlock-canary-${randomBytes(16).toString('hex')}`;
      const config = await loadClientConfig({ config: layout.clientConfig(ctx.dataDir) });
      const workDir = await mkdtemp(join(tmpdir(), 'airlock-verify-canary-'));
      let snapshot: string | undefined;
      try {
        const file = join(workDir, 'canary-task.mjs');
        await writeFile(file, CANARY_TASK_MODULE, { mode: 0o600 });
        const task = await prepareTask(file, TASK_NAME);
        const api = await connectApi(config);
        let runId: string;
        try {
          const { run } = await submitRun(api.client, config, config.project, task, { canary });
          runId = run.runId;
          const done = await watchUntilDone(api.client, config.project, runId, true);
          if (done.phase !== ActionPhase.SUCCEEDED) {
            return checkResult(check, 'fail', { runId, phase: ActionPhase[done.phase] ?? 'UNSPECIFIED', error: done.error?.code ?? '' }, { details: `the canary run ended ${ActionPhase[done.phase]}${done.error === undefined ? '' : ` (${done.error.code})`}, so nothing could be proven` });
          }
          const result = (await fetchResult(api.client, config.project, runId)) as { outputs?: { canary?: string } };
          if (result.outputs?.canary !== canary) return checkResult(check, 'fail', { runId }, { details: 'the run succeeded but its sealed outputs did not carry the canary back' });
        } finally {
          api.close();
        }

        const needles = canaryNeedles(canary);
        const { looked, scannedBytes, found } = await scanControlPlaneFiles(ctx.dataDir, canary);
        const database = ctx.endpointsFile.database;
        const evidence: Record<string, string | number | boolean | string[]> = {
          runId,
          task: TASK_NAME,
          controlPlaneFiles: looked.length,
          controlPlaneFileBytes: scannedBytes,
          database: database === undefined ? 'unknown' : database.backend,
        };
        const heap = ctx.endpointsFile.heapSnapshot;
        let heapBytes: number | undefined;
        if (heap !== undefined && (await stackProcessRunning(ctx.endpointsFile, heap.pid))) {
          snapshot = await takeHeapSnapshot(heap, signal);
          const bytes = await readFile(snapshot);
          heapBytes = bytes.length;
          evidence.heapSnapshotBytes = heapBytes;
          found.push(...findCanary(`heap snapshot of the control plane (pid ${heap.pid})`, bytes, needles));
        } else {
          evidence.heapSnapshot = 'not taken: the control plane was not started by `airlock up` (no --heapsnapshot-signal)';
        }
        // The whole live memory too: a heap snapshot holds V8's objects but not the bytes of Buffers and other off-heap memory.
        const controlPlanePid = ctx.endpointsFile.pids?.controlPlane ?? heap?.pid;
        const live = await scanStackMemory(ctx, controlPlanePid, needles, `live memory of the control plane (pid ${controlPlanePid ?? 0})`, 'no running control-plane process in endpoints.json');
        if (live.scan === undefined) evidence.memory = `not read: ${live.notRead}`;
        else Object.assign(evidence, { memoryBytes: live.scan.bytes, memoryRegions: live.scan.regions, memoryRegionsUnreadable: live.scan.unreadable });
        const memoryBytes = live.scan?.bytes;
        found.push(...(live.scan?.found ?? []));
        // The planes' recent log output, which `airlock up` keeps in its memory on the way to its terminal.
        const logTail = ctx.endpointsFile.logTail;
        const logs = await scanStackMemory(
          ctx,
          logTail?.pid,
          needles,
          `the planes' recent log output, kept by airlock up (pid ${logTail?.pid ?? 0})`,
          'the planes were not started by `airlock up`, so their logs went where their operator sent them',
        );
        if (logs.scan === undefined) evidence.logs = `not read: ${logs.notRead}`;
        else Object.assign(evidence, { logTailMaxBytes: logTail?.maxBytes ?? 0, logKeeperMemoryBytes: logs.scan.bytes });
        const logBytes = logs.scan?.bytes;
        found.push(...(logs.scan?.found ?? []));
        evidence.found = found;
        const memory = [heapBytes === undefined ? undefined : `a ${heapBytes}-byte heap snapshot of the control plane`, memoryBytes === undefined ? undefined : `${memoryBytes} bytes of its live memory (off-heap included)`, logBytes === undefined ? undefined : `the planes' recent log output (up to ${logTail?.maxBytes ?? 0} bytes, in airlock up's memory)`].filter((part) => part !== undefined);
        const where = `${looked.length} control-plane files (${scannedBytes} bytes)${database?.backend === 'postgres' ? ' (the database itself is on PostgreSQL: see controlplane.database-sealed)' : ''}${memory.length === 0 ? '' : ` and ${memory.join(' and ')}`}`;
        if (found.length > 0) return checkResult(check, 'fail', evidence, { details: `the canary of run ${runId} was found in: ${found.join('; ')}` });
        if (heapBytes === undefined) {
          return checkResult(check, 'fail', evidence, { details: `canary not found in ${where}, but the control plane's memory could not be examined: ${String(evidence.heapSnapshot)}` });
        }
        return checkResult(check, 'pass', evidence, { summary: `run ${runId.slice(0, 8)}… SUCCEEDED; canary in none of ${where}` });
      } catch (error) {
        throw new AirlockError(AirlockError.from(error).code, `the canary run failed: ${failureReason(error)}`, { cause: error });
      } finally {
        // The snapshot holds the control plane's memory, keys included: it never outlives the check.
        if (snapshot !== undefined) await rm(snapshot, { force: true });
        await rm(workDir, { recursive: true, force: true });
      }
    },
  };
}
