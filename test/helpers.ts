// Helpers shared by the repository-level (cross-plane) tests; those shared with package tests live in @airlock/testing.

/** Polls until `check` returns a value other than undefined; fails after `timeoutMs`. */
export async function eventually<T>(what: string, timeoutMs: number, check: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
