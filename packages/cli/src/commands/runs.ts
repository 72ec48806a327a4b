// `airlock run`, `airlock runs …`, `airlock outputs`, `airlock tasks …`: bundle, upload, seal and submit a task; watch runs; open their sealed results locally.
import { randomUUID } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { AirlockError, failureReason } from '@airlock/common';
import { generateSealingKeyPair, openSealed, seal, zeroize } from '@airlock/crypto';
import { tlsClientOptions } from '@airlock/pki';
import {
  ActionPhase,
  ClusterState,
  ErrorKind,
  IO_SEALING_PURPOSE,
  runInputsAad,
  runResultAad,
  verifyDataPlaneKeys,
  type Run,
  type Task,
} from '@airlock/protocol';
import { taskSpecDigest, taskVersion, type TaskSpec } from '@airlock/sdk';
import { connectApi, type AirlockClient, type ApiConnection } from '../internal/api-client.js';
import { bundleTaskModule, describeBundle, pickTask, type TaskBundle } from '../internal/bundle.js';
import { loadClientConfig, type ClientConfig, type ClientConfigLocation } from '../internal/client-config.js';
import { formatTable, print, printJson } from '../internal/output.js';
import { collectInputs, validateInputsAgainstSchema } from '../internal/task-inputs.js';

/** Options every client command takes. */
export interface ClientCommandOptions extends ClientConfigLocation {
  readonly project?: string;
  readonly json?: boolean;
}

const TERMINAL: ReadonlySet<ActionPhase> = new Set([ActionPhase.SUCCEEDED, ActionPhase.FAILED, ActionPhase.ABORTED, ActionPhase.TIMED_OUT]);
/** Bundles above this size show upload progress. */
const PROGRESS_THRESHOLD_BYTES = 4 * 1024 * 1024;

export function phaseName(phase: ActionPhase): string {
  return ActionPhase[phase] ?? 'UNSPECIFIED';
}

function isoOf(timestamp: Timestamp | undefined): string | undefined {
  return timestamp === undefined ? undefined : timestampDate(timestamp).toISOString();
}

function status(message: string): void {
  process.stderr.write(`${message}\n`);
}

async function withApi<T>(options: ClientCommandOptions, body: (api: ApiConnection, project: string) => Promise<T>, loaded?: ClientConfig): Promise<T> {
  const config = loaded ?? (await loadClientConfig(options));
  const api = await connectApi(config);
  try {
    return await body(api, options.project ?? config.project);
  } finally {
    api.close();
  }
}

/** The cluster to run on: `--cluster`, the configured one, else the only active cluster. */
async function resolveCluster(client: AirlockClient, config: ClientConfig, option: string | undefined): Promise<string> {
  const named = option ?? config.cluster;
  if (named !== undefined) return named;
  const { clusters } = await client.listClusters({ pageSize: 100 });
  const active = clusters.filter((cluster) => cluster.state === ClusterState.ACTIVE);
  if (active.length === 1 && active[0] !== undefined) return active[0].name;
  if (active.length === 0) throw new AirlockError('UNAVAILABLE', 'No data plane is registered with the control plane: start one (`npx airlock up` starts a local one)');
  throw new AirlockError('INVALID_ARGUMENT', `Several data planes are registered (${active.map((c) => c.name).join(', ')}): pick one with --cluster`, {
    details: { argument: 'cluster' },
  });
}

/** The data plane's I/O key, trusted only because its statement verifies under the pinned identity. */
async function pinnedIoKey(client: AirlockClient, config: ClientConfig & { readonly path?: string }, cluster: string): Promise<{ publicKey: Uint8Array; keyId: string }> {
  const pin = config.pins[cluster];
  if (pin === undefined) {
    throw new AirlockError(
      'DATA_PLANE_PIN_MISMATCH',
      `No identity is pinned for data plane "${cluster}" in ${config.path ?? 'the client configuration'}: pin it with \`airlock login --pin sha256:…\``,
    );
  }
  const { cluster: found } = await client.getCluster({ name: cluster });
  if (found?.state === ClusterState.REVOKED) throw new AirlockError('CLUSTER_REVOKED', `Data plane "${cluster}" is revoked`);
  const verified = verifyDataPlaneKeys(found?.keys, pin, cluster);
  return verified.ioKey;
}

/** PUTs the bundle to the presigned URL, with the headers signed into it. */
export async function uploadBundle(bundle: TaskBundle, url: string, headers: Readonly<Record<string, string>>, caFile: string | undefined): Promise<void> {
  const ca = caFile === undefined ? rootCertificates.join('\n') : await readFile(caFile, 'utf8');
  const target = new URL(url);
  const showProgress = bundle.size >= PROGRESS_THRESHOLD_BYTES && process.stderr.isTTY === true;
  await new Promise<void>((resolvePut, rejectPut) => {
    const req = httpsRequest(
      target,
      { method: 'PUT', headers: { ...headers, 'content-length': String(bundle.size) }, ...tlsClientOptions({ ca }), timeout: 300_000 },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.length < 64 && chunks.push(chunk));
        response.on('end', () => {
          if (response.statusCode === 200) return resolvePut();
          const body = Buffer.concat(chunks).toString('utf8');
          const code = /<Code>([^<]+)<\/Code>/.exec(body)?.[1] ?? `HTTP ${response.statusCode}`;
          rejectPut(new AirlockError('UNAVAILABLE', `The object store refused the bundle upload: ${code}`));
        });
        response.on('error', rejectPut);
      },
    );
    req.on('error', (error) => rejectPut(new AirlockError('UNAVAILABLE', `Uploading the bundle failed: ${failureReason(error)}`)));
    req.on('timeout', () => req.destroy(new Error('timed out')));
    const step = 1024 * 1024;
    let offset = 0;
    const writeMore = (): void => {
      while (offset < bundle.size) {
        const end = Math.min(offset + step, bundle.size);
        const ok = req.write(bundle.code.subarray(offset, end));
        offset = end;
        if (showProgress) process.stderr.write(`\rUploading bundle: ${Math.floor((offset / bundle.size) * 100)}%`);
        if (!ok) return void req.once('drain', writeMore);
      }
      if (showProgress) process.stderr.write('\n');
      req.end();
    };
    writeMore();
  });
}

/** The run's result document, fetched sealed to a fresh key and opened here. */
export async function fetchResult(client: AirlockClient, project: string, runId: string): Promise<unknown> {
  const keys = generateSealingKeyPair();
  try {
    const response = await client.getRunOutputs({ project, runId, recipientPublicKey: keys.publicKey });
    if (response.result === undefined) throw new AirlockError('INTERNAL', 'The control plane returned no result');
    const plaintext = await openSealed({
      recipientPrivateKey: keys.privateKey,
      recipientPublicKey: keys.publicKey,
      purpose: IO_SEALING_PURPOSE,
      sealed: response.result.sealed,
      aad: runResultAad(project, runId, response.actionId),
    });
    return JSON.parse(plaintext.toString('utf8')) as unknown;
  } finally {
    zeroize(keys.privateKey);
  }
}

export function runSummary(run: Run): Record<string, unknown> {
  return {
    runId: run.runId,
    project: run.task?.project,
    task: run.task?.name,
    version: run.task?.version,
    cluster: run.cluster,
    phase: phaseName(run.phase),
    attempts: run.attempts,
    actionId: run.actionId,
    createdAt: isoOf(run.createdAt),
    completedAt: isoOf(run.completedAt),
    createdBy: run.createdBy,
    phases: run.phases.map((p) => ({ phase: phaseName(p.phase), at: isoOf(p.at) })),
    ...(run.error === undefined ? {} : { error: { code: run.error.code, kind: ErrorKind[run.error.kind] ?? 'SYSTEM', retryable: run.error.retryable, message: run.error.message } }),
  };
}

/** Shows the result document: outputs, or the task's own error opened locally. */
function printResult(result: unknown): void {
  const doc = result as { ok?: boolean; outputs?: unknown; error?: { code?: string; kind?: string; message?: string; stack?: string; issues?: unknown; stderrTail?: string } };
  if (doc.ok === true) {
    print(JSON.stringify(doc.outputs, null, 2));
    return;
  }
  const error = doc.error ?? {};
  print(`error: ${error.code ?? 'UNKNOWN'} (${error.kind ?? 'SYSTEM'}): ${error.message ?? ''}`);
  if (Array.isArray(error.issues)) for (const issue of error.issues as Array<{ path?: string; message?: string }>) print(`  ${issue.path ?? ''}: ${issue.message ?? ''}`);
  if (typeof error.stderrTail === 'string' && error.stderrTail.length > 0) print(`stderr (end):\n${error.stderrTail}`);
  if (typeof error.stack === 'string') print(error.stack);
}

/** Streams the run's phases until it is terminal; returns the final run. */
export async function watchUntilDone(client: AirlockClient, project: string, runId: string, quiet: boolean): Promise<Run> {
  let last: Run | undefined;
  let shown = 0;
  for await (const message of client.watchRun({ project, runId }, { timeoutMs: 0 })) {
    const run = message.run;
    if (run === undefined) continue;
    last = run;
    if (!quiet) {
      run.phases.forEach((transition, index) => {
        if (index < shown) return;
        // Each QUEUED starts an attempt: the n-th QUEUED is attempt n.
        const attempt = run.phases.slice(0, index + 1).filter((p) => p.phase === ActionPhase.QUEUED).length;
        status(`  ${isoOf(transition.at) ?? ''}  ${phaseName(transition.phase)}${transition.phase === ActionPhase.QUEUED && attempt > 1 ? ` (attempt ${attempt})` : ''}`);
      });
      shown = run.phases.length;
    }
    if (TERMINAL.has(run.phase)) break;
  }
  if (last === undefined || !TERMINAL.has(last.phase)) {
    throw new AirlockError('UNAVAILABLE', `The watch of run ${runId} ended before the run did: \`airlock runs watch ${runId}\` resumes it`);
  }
  return last;
}

/** Whether a finished run has a result document to open (outputs, or a failure's details). */
function hasResult(run: Run): boolean {
  return run.phase === ActionPhase.SUCCEEDED || (run.error !== undefined && run.error.code !== 'DATA_PLANE_LOST' && run.phase !== ActionPhase.ABORTED);
}

export interface RunCommandOptions extends ClientCommandOptions {
  readonly input: readonly string[];
  readonly inputs?: string;
  readonly cluster?: string;
  readonly wait: boolean;
  readonly idempotencyKey?: string;
}

/** A task bundled, described and versioned, ready to upload and run. */
export interface PreparedTask {
  readonly bundle: TaskBundle;
  readonly spec: TaskSpec;
  readonly version: string;
}

/** Bundles `file` and picks its task (the only one, or `taskName`). */
export async function prepareTask(file: string, taskName: string | undefined): Promise<PreparedTask> {
  const bundle = await bundleTaskModule(file);
  const spec: TaskSpec = pickTask(await describeBundle(bundle), file, taskName).spec;
  return { bundle, spec, version: taskVersion(taskSpecDigest(spec), bundle.sha256) };
}

export interface SubmitOptions {
  readonly cluster?: string | undefined;
  readonly idempotencyKey?: string | undefined;
  /** Progress lines (stderr for the CLI). */
  readonly onStatus?: (message: string) => void;
}

/**
 * Uploads the bundle if the data plane lacks it, registers the task version, verifies the data
 * plane's keys against the pin, seals the inputs to its I/O key and creates the run.
 */
export async function submitRun(client: AirlockClient, config: ClientConfig & { readonly path?: string }, project: string, task: PreparedTask, inputs: unknown, options: SubmitOptions = {}): Promise<{ run: Run; cluster: string }> {
  const say = options.onStatus ?? (() => undefined);
  const { bundle, spec, version } = task;
  const cluster = await resolveCluster(client, config, options.cluster);
  const ioKey = await pinnedIoKey(client, config, cluster);
  const ref = { sha256: bundle.sha256, size: BigInt(bundle.size) };
  const location = await client.createUploadLocation({ project, cluster, bundle: ref });
  if (location.alreadyStored) {
    say(`Bundle ${bundle.sha256.slice(0, 12)} (${bundle.size} bytes) is already stored`);
  } else {
    say(`Uploading bundle ${bundle.sha256.slice(0, 12)} (${bundle.size} bytes) to the data plane's object store…`);
    await uploadBundle(bundle, location.url, location.headers, config.caFile);
  }
  const registered = await client.registerTask({ project, specJson: Buffer.from(JSON.stringify(spec), 'utf8'), bundle: ref });
  if (registered.task?.ref?.version !== version) {
    throw new AirlockError('INTERNAL', `The control plane registered version ${registered.task?.ref?.version ?? '(none)'} where this CLI computed ${version}`);
  }
  const sealed = await seal({
    recipientPublicKey: ioKey.publicKey,
    purpose: IO_SEALING_PURPOSE,
    plaintext: Buffer.from(JSON.stringify(inputs), 'utf8'),
    aad: runInputsAad(project, spec.name),
  });
  const created = await client.createRun({
    project,
    taskName: spec.name,
    taskVersion: version,
    cluster,
    inputs: { sealed, keyId: ioKey.keyId },
    idempotencyKey: options.idempotencyKey ?? randomUUID(),
  });
  if (created.run === undefined) throw new AirlockError('INTERNAL', 'The control plane returned no run');
  return { run: created.run, cluster };
}

/** `airlock run <file> [task]`. Returns the process exit code. */
export async function runTask(file: string, taskName: string | undefined, options: RunCommandOptions): Promise<number> {
  const quiet = options.json === true;
  // The configuration first: a missing one is reported before a second of bundling.
  const config = await loadClientConfig(options);
  if (!quiet) status(`Bundling ${file}…`);
  const task = await prepareTask(file, taskName);
  const inputs = await collectInputs(task.spec.inputSchema, options.input, options.inputs);
  validateInputsAgainstSchema(task.spec.inputSchema, inputs, task.spec.name);

  return withApi(options, async ({ client }, project) => {
    const { run, cluster } = await submitRun(client, config, project, task, inputs, {
      cluster: options.cluster,
      idempotencyKey: options.idempotencyKey,
      ...(quiet ? {} : { onStatus: status }),
    });
    if (!options.wait) {
      if (quiet) printJson(runSummary(run));
      else print(run.runId);
      if (!quiet) status(`Run ${run.runId} is ${phaseName(run.phase)}: \`npx airlock runs watch ${run.runId}\` follows it`);
      return 0;
    }
    if (!quiet) status(`Run ${run.runId} (${task.spec.name}@${task.version.slice(0, 12)} on ${cluster}):`);
    return finish(client, project, run.runId, quiet);
  }, config);
}

/** Watches a run to its end, then prints its result; the exit code is 0 only for SUCCEEDED. */
async function finish(client: AirlockClient, project: string, runId: string, quiet: boolean): Promise<number> {
  const done = await watchUntilDone(client, project, runId, quiet);
  const result = hasResult(done) ? await fetchResult(client, project, runId).catch((error: unknown) => ({ unavailable: AirlockError.from(error).message })) : undefined;
  if (quiet) {
    printJson({ run: runSummary(done), ...(result === undefined ? {} : { result }) });
  } else {
    status(`Run ${runId} ${phaseName(done.phase)}${done.error === undefined ? '' : `: ${done.error.code}`}`);
    if (result !== undefined && !('unavailable' in (result as object))) printResult(result);
    else if (result !== undefined) status(`(the result could not be fetched: ${(result as { unavailable: string }).unavailable})`);
  }
  return done.phase === ActionPhase.SUCCEEDED ? 0 : 1;
}

export async function runsList(options: ClientCommandOptions & { task?: string; phase?: string; limit?: number }): Promise<void> {
  await withApi(options, async ({ client }, project) => {
    const named = options.phase === undefined ? ActionPhase.UNSPECIFIED : (ActionPhase[options.phase.toUpperCase() as keyof typeof ActionPhase] as ActionPhase | undefined);
    if (named === undefined) throw new AirlockError('INVALID_ARGUMENT', `--phase must be one of ${[...TERMINAL, ActionPhase.QUEUED, ActionPhase.INITIALIZING, ActionPhase.RUNNING].map(phaseName).join(', ')}`);
    const runs: Run[] = [];
    let pageToken = '';
    const limit = options.limit ?? 50;
    do {
      const page = await client.listRuns({ project, taskName: options.task ?? '', phase: named, pageSize: Math.min(limit - runs.length, 100), pageToken });
      runs.push(...page.runs);
      pageToken = page.nextPageToken;
    } while (pageToken !== '' && runs.length < limit);
    if (options.json === true) return printJson(runs.map(runSummary));
    if (runs.length === 0) return print(`No runs in project "${project}".`);
    print(formatTable(['RUN', 'TASK', 'PHASE', 'ATTEMPTS', 'CREATED', 'ERROR'], runs.map((r) => [r.runId, r.task?.name ?? '', phaseName(r.phase), String(r.attempts), isoOf(r.createdAt) ?? '', r.error?.code ?? ''])));
  });
}

export async function runsGet(runId: string, options: ClientCommandOptions): Promise<void> {
  await withApi(options, async ({ client }, project) => {
    const { run } = await client.getRun({ project, runId });
    if (run === undefined) throw new AirlockError('NOT_FOUND', `No run ${runId}`);
    const { actions } = await client.listActions({ project, runId });
    const result = TERMINAL.has(run.phase) && hasResult(run) ? await fetchResult(client, project, runId).catch((error: unknown) => ({ unavailable: AirlockError.from(error).message })) : undefined;
    if (options.json === true) {
      return printJson({
        run: runSummary(run),
        actions: actions.map((a) => ({ actionId: a.actionId, attempt: a.attempt, phase: phaseName(a.phase), error: a.error?.code, phases: a.phases.map((p) => ({ phase: phaseName(p.phase), at: isoOf(p.at) })) })),
        ...(result === undefined ? {} : { result }),
      });
    }
    const summary = runSummary(run);
    print(`run       ${run.runId}`);
    print(`task      ${String(summary.task)}@${String(summary.version).slice(0, 12)}  (project ${String(summary.project)}, cluster ${run.cluster})`);
    print(`phase     ${phaseName(run.phase)}${run.abortRequested ? ' (abort requested)' : ''}`);
    print(`attempts  ${run.attempts}`);
    for (const transition of run.phases) print(`  ${isoOf(transition.at) ?? ''}  ${phaseName(transition.phase)}`);
    if (run.error !== undefined) print(`error     ${run.error.code} (${ErrorKind[run.error.kind] ?? 'SYSTEM'}${run.error.retryable ? ', retryable' : ''})`);
    if (actions.length > 0) {
      print('');
      print(formatTable(['ACTION', 'ATTEMPT', 'PHASE', 'ERROR'], actions.map((a) => [a.actionId, String(a.attempt), phaseName(a.phase), a.error?.code ?? ''])));
    }
    if (result !== undefined) {
      print('');
      if ('unavailable' in (result as object)) print(`(the result could not be fetched: ${(result as { unavailable: string }).unavailable})`);
      else printResult(result);
    }
  });
}

export async function runsWatch(runId: string, options: ClientCommandOptions): Promise<number> {
  return withApi(options, async ({ client }, project) => finish(client, project, runId, options.json === true));
}

export async function runsAbort(runId: string, options: ClientCommandOptions): Promise<void> {
  await withApi(options, async ({ client }, project) => {
    const { run } = await client.abortRun({ project, runId });
    if (run === undefined) throw new AirlockError('INTERNAL', 'The control plane returned no run');
    if (options.json === true) return printJson(runSummary(run));
    print(TERMINAL.has(run.phase) ? `Run ${runId} is ${phaseName(run.phase)}` : `Abort of run ${runId} requested; it is ${phaseName(run.phase)} until the data plane stops it`);
  });
}

export async function runOutputs(runId: string, options: ClientCommandOptions): Promise<number> {
  return withApi(options, async ({ client }, project) => {
    const result = (await fetchResult(client, project, runId)) as { ok?: boolean; outputs?: unknown };
    if (options.json === true) printJson(result);
    else printResult(result);
    return result.ok === true ? 0 : 1;
  });
}

interface TaskSummary {
  readonly project: string | undefined;
  readonly name: string | undefined;
  readonly version: string | undefined;
  readonly kind: string | undefined;
  readonly description: string | undefined;
  readonly bundle: { readonly sha256: string; readonly size: number } | undefined;
  readonly createdAt: string | undefined;
  readonly createdBy: string;
  readonly inputSchema: unknown;
  readonly outputSchema: unknown;
  readonly retries: unknown;
  readonly timeoutMs: number | undefined;
}

function taskSummary(task: Task): TaskSummary {
  let spec: Partial<TaskSpec> = {};
  try {
    spec = JSON.parse(Buffer.from(task.specJson).toString('utf8')) as Partial<TaskSpec>;
  } catch {
    // A spec the control plane accepted is JSON; show the rest even if not.
  }
  return {
    project: task.ref?.project,
    name: task.ref?.name,
    version: task.ref?.version,
    kind: spec.kind,
    description: spec.description,
    bundle: task.bundle === undefined ? undefined : { sha256: task.bundle.sha256, size: Number(task.bundle.size) },
    createdAt: isoOf(task.createdAt),
    createdBy: task.createdBy,
    inputSchema: spec.inputSchema,
    outputSchema: spec.outputSchema,
    retries: spec.retries,
    timeoutMs: spec.timeoutMs,
  };
}

export async function tasksList(options: ClientCommandOptions): Promise<void> {
  await withApi(options, async ({ client }, project) => {
    const tasks: Task[] = [];
    let pageToken = '';
    do {
      const page = await client.listTasks({ project, pageSize: 100, pageToken });
      tasks.push(...page.tasks);
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    if (options.json === true) return printJson(tasks.map(taskSummary));
    if (tasks.length === 0) return print(`No tasks in project "${project}": \`npx airlock run <file.ts>\` registers one.`);
    print(formatTable(['TASK', 'VERSION', 'KIND', 'REGISTERED'], tasks.map((t) => { const s = taskSummary(t); return [s.name ?? '', (s.version ?? '').slice(0, 12), s.kind ?? '', s.createdAt ?? '']; })));
  });
}

export async function tasksGet(name: string, options: ClientCommandOptions & { version?: string }): Promise<void> {
  await withApi(options, async ({ client }, project) => {
    const { task } = await client.getTask({ project, name, version: options.version ?? '' });
    if (task === undefined) throw new AirlockError('NOT_FOUND', `No task ${name}`);
    const summary = taskSummary(task);
    if (options.json === true) return printJson(summary);
    print(`task      ${summary.name ?? name}  (project ${summary.project ?? project})`);
    print(`version   ${summary.version ?? ''}`);
    if (summary.description !== undefined) print(`about     ${summary.description}`);
    print(`kind      ${summary.kind ?? ''}`);
    print(`bundle    sha256:${summary.bundle?.sha256 ?? ''} (${summary.bundle?.size ?? 0} bytes)`);
    print(`inputs    ${JSON.stringify(summary.inputSchema)}`);
    print(`outputs   ${JSON.stringify(summary.outputSchema)}`);
  });
}
