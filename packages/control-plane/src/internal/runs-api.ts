// AirlockService's task and run RPCs: roles (viewer reads, runner writes), proto ⇄ run-service records.
import type { MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { AirlockError } from '@airlock/common';
import { ActionPhase, type AirlockService, ErrorKind, type ErrorRecordSchema, type RunActionSchema, type RunSchema, type TaskSchema } from '@airlock/protocol';
import type { ActionPhaseName } from './action-queue.js';
import type { ApiPrincipal, ApiRole } from './api-tokens.js';
import { checkProject, type RunErrorRecord, type RunPhaseEntry, type RunRecord, type RunService, type TaskRecord } from './run-service.js';

/** Checks that the caller holds `minimum` in `project` (ACCESS_DENIED otherwise) and returns the caller. */
export type Authorize = (context: HandlerContext, project: string, minimum: ApiRole) => ApiPrincipal;

const PHASE_TO_PROTO: Readonly<Record<ActionPhaseName, ActionPhase>> = Object.freeze({
  QUEUED: ActionPhase.QUEUED,
  INITIALIZING: ActionPhase.INITIALIZING,
  RUNNING: ActionPhase.RUNNING,
  SUCCEEDED: ActionPhase.SUCCEEDED,
  FAILED: ActionPhase.FAILED,
  ABORTED: ActionPhase.ABORTED,
  TIMED_OUT: ActionPhase.TIMED_OUT,
});

function phaseFromProto(phase: ActionPhase): ActionPhaseName | undefined {
  if (phase === ActionPhase.UNSPECIFIED) return undefined;
  const found = (Object.entries(PHASE_TO_PROTO) as Array<[ActionPhaseName, ActionPhase]>).find(([, value]) => value === phase);
  if (found === undefined) throw new AirlockError('INVALID_ARGUMENT', 'phase is not a phase', { details: { argument: 'phase' } });
  return found[0];
}

function phasesMessage(phases: readonly RunPhaseEntry[]): Array<{ phase: ActionPhase; at: ReturnType<typeof timestampFromDate> }> {
  return phases.map((entry) => ({ phase: PHASE_TO_PROTO[entry.phase], at: timestampFromDate(entry.at) }));
}

function errorMessage(error: RunErrorRecord): MessageInitShape<typeof ErrorRecordSchema> {
  return {
    code: error.code,
    message: error.message,
    retryable: error.retryable,
    occurredAt: timestampFromDate(error.occurredAt),
    kind: error.kind === 'USER' ? ErrorKind.USER : ErrorKind.SYSTEM,
  };
}

export function taskMessage(task: TaskRecord): MessageInitShape<typeof TaskSchema> {
  return {
    ref: { project: task.project, name: task.name, version: task.version },
    specJson: task.specJson,
    bundle: { sha256: task.bundle.sha256, size: BigInt(task.bundle.size) },
    createdAt: timestampFromDate(task.createdAt),
    createdBy: task.createdBy,
  };
}

export function runMessage(run: RunRecord): MessageInitShape<typeof RunSchema> {
  return {
    runId: run.runId,
    task: { project: run.project, name: run.taskName, version: run.taskVersion },
    cluster: run.cluster,
    phase: PHASE_TO_PROTO[run.phase],
    phases: phasesMessage(run.phases),
    ...(run.error === undefined ? {} : { error: errorMessage(run.error) }),
    attempts: run.attempts,
    actionId: run.actionId,
    createdAt: timestampFromDate(run.createdAt),
    ...(run.completedAt === undefined ? {} : { completedAt: timestampFromDate(run.completedAt) }),
    createdBy: run.createdBy,
    abortRequested: run.abortRequested,
  };
}

/** The task and run handlers of AirlockService, to merge into its implementation. */
export function runServiceHandlers(runs: RunService, authorize: Authorize): Partial<ServiceImpl<typeof AirlockService>> {
  /** Checks the project's form before the role, so a malformed name is INVALID_ARGUMENT rather than a confusing denial. */
  const allow = (context: HandlerContext, project: string, minimum: ApiRole): ApiPrincipal => authorize(context, checkProject(project), minimum);
  return {
    async registerTask(request, context) {
      const principal = allow(context, request.project, 'runner');
      const { task, created } = await runs.registerTask({ project: request.project, specJson: request.specJson, bundle: request.bundle, createdBy: principal.subject });
      return { task: taskMessage(task), created };
    },

    async getTask(request, context) {
      allow(context, request.project, 'viewer');
      return { task: taskMessage(await runs.getTask(request.project, request.name, request.version)) };
    },

    async listTasks(request, context) {
      allow(context, request.project, 'viewer');
      const page = await runs.listTasks(request.project, request.pageSize, request.pageToken);
      return { tasks: page.tasks.map(taskMessage), nextPageToken: page.nextPageToken };
    },

    async createUploadLocation(request, context) {
      allow(context, request.project, 'runner');
      const location = await runs.createUploadLocation(request.project, request.cluster, request.bundle);
      return {
        alreadyStored: location.alreadyStored,
        url: location.url,
        headers: { ...location.headers },
        ...(location.expiresAt === undefined ? {} : { expiresAt: timestampFromDate(location.expiresAt) }),
      };
    },

    async createRun(request, context) {
      const principal = allow(context, request.project, 'runner');
      const { run, deduplicated } = await runs.createRun({
        project: request.project,
        taskName: request.taskName,
        taskVersion: request.taskVersion,
        cluster: request.cluster,
        ...(request.inputs === undefined ? {} : { inputs: { sealed: request.inputs.sealed, keyId: request.inputs.keyId } }),
        idempotencyKey: request.idempotencyKey,
        createdBy: principal.subject,
      });
      return { run: runMessage(run), deduplicated };
    },

    async getRun(request, context) {
      allow(context, request.project, 'viewer');
      return { run: runMessage(await runs.getRun(request.project, request.runId)) };
    },

    async listRuns(request, context) {
      allow(context, request.project, 'viewer');
      const page = await runs.listRuns(request.project, { taskName: request.taskName, phase: phaseFromProto(request.phase), pageSize: request.pageSize, pageToken: request.pageToken });
      return { runs: page.runs.map(runMessage), nextPageToken: page.nextPageToken };
    },

    async *watchRun(request, context) {
      allow(context, request.project, 'viewer');
      for await (const run of runs.watchRun(request.project, request.runId, context.signal)) yield { run: runMessage(run) };
    },

    async abortRun(request, context) {
      allow(context, request.project, 'runner');
      return { run: runMessage(await runs.abortRun(request.project, request.runId)) };
    },

    async listActions(request, context) {
      allow(context, request.project, 'viewer');
      const actions = await runs.listActions(request.project, request.runId);
      return {
        actions: actions.map(
          (action): MessageInitShape<typeof RunActionSchema> => ({
            actionId: action.actionId,
            parentActionId: action.parentActionId ?? '',
            task: { project: action.project, name: action.taskName, version: action.taskVersion },
            attempt: action.attempt,
            phase: PHASE_TO_PROTO[action.phase],
            phases: phasesMessage(action.phases),
            ...(action.error === undefined ? {} : { error: errorMessage(action.error) }),
          }),
        ),
      };
    },

    async getRunOutputs(request, context) {
      allow(context, request.project, 'viewer');
      const outputs = await runs.getRunOutputs(request.project, request.runId, request.recipientPublicKey);
      return { result: { sealed: outputs.result.sealed, keyId: outputs.result.keyId }, actionId: outputs.actionId };
    },
  };
}
