// Tests for discoverTasks and findTask over module namespaces.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { discoverTasks, findTask } from './discover.js';
import { task } from './task.js';

const define = (name: string) => task({ name, inputs: z.object({}), outputs: z.object({}) }, () => ({}));
const alpha = define('alpha');
const beta = define('beta');

describe('discoverTasks', () => {
  it('lists named and default exports once each, ignoring other exports', async () => {
    const namespace = { alpha, beta, default: alpha, helper: () => 1, VALUE: 3 };
    expect(discoverTasks(namespace)).toEqual([
      { task: alpha, exportNames: ['alpha', 'default'] },
      { task: beta, exportNames: ['beta'] },
    ]);
    // A real module namespace object works the same way.
    const real = (await import('../test/fixtures/two-tasks.js')) as Record<string, unknown>;
    expect(discoverTasks(real).map((found) => found.task.name)).toEqual(['fixture-one', 'fixture-two']);
  });

  it('refuses two different tasks with one name', () => {
    expect(() => discoverTasks({ a: define('same'), b: define('same') })).toThrowError(expect.objectContaining({ code: 'TASK_DEFINITION_INVALID' }));
  });

  it('finds no tasks in a module without any', () => {
    expect(discoverTasks({ x: 1 })).toEqual([]);
  });
});

describe('findTask', () => {
  it('finds by task name or export name, or the only task', () => {
    const renamed = define('task-name');
    expect(findTask({ exported: renamed, beta }, 'task-name')).toBe(renamed);
    expect(findTask({ exported: renamed, beta }, 'exported')).toBe(renamed);
    expect(findTask({ alpha })).toBe(alpha);
  });

  it('throws TASK_NOT_FOUND listing the tasks there are', () => {
    expect(() => findTask({ alpha, beta }, 'gamma')).toThrowError(expect.objectContaining({ code: 'TASK_NOT_FOUND', message: expect.stringContaining('alpha, beta') }));
    expect(() => findTask({ alpha, beta })).toThrowError(expect.objectContaining({ code: 'TASK_NOT_FOUND' }));
    expect(() => findTask({})).toThrowError(expect.objectContaining({ code: 'TASK_NOT_FOUND' }));
  });
});
