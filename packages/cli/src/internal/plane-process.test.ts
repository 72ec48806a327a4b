import { describe, expect, it } from 'vitest';
import { PLANE_NODE_FLAGS, planeExecArgv, planeFlagsHint } from './plane-process.js';

describe('planeExecArgv', () => {
  it('adds the plane V8 flags to the parent flags, in order', () => {
    expect(planeExecArgv(['--conditions=airlock-source'])).toEqual(['--conditions=airlock-source', ...PLANE_NODE_FLAGS]);
    expect(planeExecArgv([])).toEqual([...PLANE_NODE_FLAGS]);
  });

  it('keeps a value the user gave for the same flag instead of adding a second one', () => {
    expect(planeExecArgv(['--initial-old-space-size=512'])).toEqual(['--initial-old-space-size=512']);
  });

  it('is a flag this Node accepts on the command line', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const { stdout } = await promisify(execFile)(process.execPath, [...PLANE_NODE_FLAGS, '-p', '1 + 1']);
    expect(stdout.trim()).toBe('2');
  });

  it('hints how to start a hand-run server with the flags, and stays quiet when it has them', () => {
    const hint = planeFlagsHint([], 'objectstore serve');
    expect(hint).toContain(`node ${PLANE_NODE_FLAGS.join(' ')} "$(command -v airlock)" objectstore serve`);
    expect(planeFlagsHint([...PLANE_NODE_FLAGS], 'objectstore serve')).toBeUndefined();
    expect(planeFlagsHint(['--initial-old-space-size=256'], 'objectstore serve')).toBeUndefined();
  });
});
