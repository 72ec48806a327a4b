// Human-readable and JSON output for CLI commands.

/** Prints rows as an aligned text table (no colours, so it reads the same in logs and pipes). */
export function formatTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_k, v: unknown) => (v instanceof Date ? v.toISOString() : v), 2)}\n`);
}

export function print(text = ''): void {
  process.stdout.write(`${text}\n`);
}
