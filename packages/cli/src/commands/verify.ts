// `airlock verify`: runs the @airlock/verify checks against the local stack and reports pass/fail with evidence.
import { AirlockError } from '@airlock/common';
import { allPassed, defaultChecks, loadCheckContext, runChecks, stackProcessRunning, type CheckContext, type CheckResult, type EvidenceValue } from '@airlock/verify';
import { canaryRunCheck } from '../internal/canary-run-check.js';
import { killSwitchCheck } from '../internal/kill-switch-check.js';
import { layout, resolveDataDir } from '../internal/data-dir.js';
import { formatTable, print, printJson } from '../internal/output.js';

export interface VerifyOptions {
  readonly dataDir?: string;
  readonly json: boolean;
}


async function loadRunningStack(dataDir: string): Promise<CheckContext> {
  let ctx: CheckContext;
  try {
    ctx = await loadCheckContext(dataDir);
  } catch (error) {
    if (AirlockError.is(error, 'NOT_FOUND') && error.details?.path === layout.endpoints(dataDir)) {
      throw new AirlockError('UNAVAILABLE', `no running stack in ${dataDir} (no endpoints.json); start one with \`npx airlock up --data-dir ${dataDir}\``);
    }
    throw error;
  }
  if (!(await stackProcessRunning(ctx.endpointsFile, ctx.endpointsFile.pid))) {
    throw new AirlockError(
      'UNAVAILABLE',
      `no running stack in ${dataDir}: endpoints.json names pid ${ctx.endpointsFile.pid}, which is not running; start one with \`npx airlock up --data-dir ${dataDir}\``,
    );
  }
  return ctx;
}

const STATUS_LABEL = { pass: 'PASS', fail: 'FAIL', skip: 'SKIP' } as const;

function formatValue(value: EvidenceValue): string {
  return Array.isArray(value) ? (value.length === 0 ? '(none)' : value.join(', ')) : String(value);
}

/** The one-line evidence summary for the table: the check's own summary, else its first facts. */
function evidenceSummary(result: CheckResult, width = 100): string {
  const text =
    result.summary ??
    Object.entries(result.evidence)
      .map(([key, value]) => `${key}=${formatValue(value)}`)
      .join('; ');
  return text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

function printReport(dataDir: string, results: readonly CheckResult[]): void {
  print(`Verifying the stack in ${dataDir}`);
  print();
  print(formatTable(['CHECK', 'STATUS', 'EVIDENCE'], results.map((r) => [r.id, STATUS_LABEL[r.status], evidenceSummary(r)])));
  const failed = results.filter((r) => r.status === 'fail');
  const skipped = results.filter((r) => r.status === 'skip');
  for (const result of failed) {
    print();
    print(`FAIL ${result.id}: ${result.title}`);
    for (const line of (result.details ?? 'no details').split('\n')) print(`  - ${line}`);
    print('  evidence:');
    for (const [key, value] of Object.entries(result.evidence)) if (key !== 'problems') print(`    ${key}: ${formatValue(value)}`);
  }
  if (skipped.length > 0) {
    print();
    for (const result of skipped) print(`SKIP ${result.id}: ${result.details ?? 'not applicable'}`);
  }
  print();
  const passed = results.length - failed.length - skipped.length;
  const outage = results.some((r) => r.id === 'stack.reachable' && r.status === 'fail');
  print(
    `${passed} passed, ${failed.length} failed, ${skipped.length} skipped. ` +
      (outage
        ? 'Verification FAILED: the stack is not reachable (an outage), so the other checks were not run.'
        : (failed.length === 0 ? 'Verification passed' : 'Verification FAILED') +
          (skipped.length === 0 ? '.' : ' (skipped checks do not apply to this stack yet and do not fail verification).')),
  );
}

/** Exit status 0 only when no check failed; skips do not fail. A missing stack is an error (exit 1). */
export async function runVerify(options: VerifyOptions): Promise<void> {
  const dataDir = resolveDataDir(options.dataDir);
  const ctx = await loadRunningStack(dataDir);
  const results = await runChecks([...defaultChecks(), canaryRunCheck(), killSwitchCheck()], ctx);
  const ok = allPassed(results);
  if (options.json) printJson({ ok, checks: results });
  else printReport(dataDir, results);
  process.exitCode = ok ? 0 : 1;
}
