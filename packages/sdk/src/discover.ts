// Finding the tasks a user's module exports, for the CLI (registering, running) and the executor (running one).
import { AirlockError } from '@airlock/common/errors';
import { isTask, type AnyTask } from './task.js';

/** A task found in a module, with the export names it is reachable by (`default` included). */
export interface DiscoveredTask {
  readonly task: AnyTask;
  readonly exportNames: readonly string[];
}

/**
 * Lists the tasks a module namespace exports (`import * as ns from './tasks.js'`), named exports
 * and `default` alike, each once, in export order. Other exports are ignored. Throws
 * TASK_DEFINITION_INVALID when two different tasks share a name, since a run names its task.
 */
export function discoverTasks(moduleNamespace: Readonly<Record<string, unknown>>): readonly DiscoveredTask[] {
  const byTask = new Map<AnyTask, string[]>();
  const byName = new Map<string, AnyTask>();
  for (const [exportName, value] of Object.entries(moduleNamespace)) {
    if (!isTask(value)) continue;
    const other = byName.get(value.name);
    if (other !== undefined && other !== value) {
      throw new AirlockError('TASK_DEFINITION_INVALID', `Two different tasks are named "${value.name}" (exports ${[...(byTask.get(other) ?? []), exportName].join(', ')})`);
    }
    byName.set(value.name, value);
    const names = byTask.get(value) ?? [];
    names.push(exportName);
    byTask.set(value, names);
  }
  return Object.freeze([...byTask].map(([found, exportNames]) => Object.freeze({ task: found, exportNames: Object.freeze(exportNames) })));
}

/**
 * The task named `name` (a task name, or an export name) in a module; without a name, the module's
 * only task. Throws TASK_NOT_FOUND listing the task names there are.
 */
export function findTask(moduleNamespace: Readonly<Record<string, unknown>>, name?: string): AnyTask {
  const tasks = discoverTasks(moduleNamespace);
  const available = tasks.map((found) => found.task.name).join(', ') || 'none';
  if (name === undefined) {
    const only = tasks[0];
    if (tasks.length === 1 && only !== undefined) return only.task;
    throw new AirlockError('TASK_NOT_FOUND', tasks.length === 0 ? 'The module exports no tasks' : `The module exports several tasks; name one of: ${available}`);
  }
  const match = tasks.find((found) => found.task.name === name) ?? tasks.find((found) => found.exportNames.includes(name));
  if (match === undefined) throw new AirlockError('TASK_NOT_FOUND', `The module exports no task named "${name}" (tasks: ${available})`);
  return match.task;
}
