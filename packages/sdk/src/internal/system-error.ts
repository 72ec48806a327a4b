// Marks errors that are the platform's fault (a full disk while preparing a command), so executeTask records them as SYSTEM.
const SYSTEM_ERRORS = new WeakSet<object>();

/** Marks `error` as a platform failure and returns it, for `throw markSystemError(error)`. */
export function markSystemError(error: unknown): unknown {
  if (typeof error === 'object' && error !== null) SYSTEM_ERRORS.add(error);
  return error;
}

/** True when the SDK marked `error` as a platform failure. */
export function isSystemError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && SYSTEM_ERRORS.has(error);
}
