// What other packages (and the benchmarks) may use from the CLI; running `airlock` is main.ts.
export { PLANE_NODE_FLAGS, planeExecArgv } from './internal/plane-process.js';
