// Public API of @airlock/common: errors, configuration resolution and logging.
export { ERROR_CODES, isAirlockErrorCode, type AirlockErrorCode, type ErrorCodeInfo } from './error-codes.js';
export { AirlockError, airlockErrorFromJSON, errorCodeOf, failureReason, type AirlockErrorOptions, type ErrorDetails } from './errors.js';
export { configCheck, configError, freezeConfig, type DeepReadonly } from './config.js';
export { defaultRedactor, isSensitiveKey, Redactor, REDACTED, registerSecretValue } from './redact.js';
export {
  createLogger,
  DEFAULT_LOG_RATE_LIMIT,
  LOG_LEVELS,
  resolveLoggerConfig,
  type Logger,
  type LoggerOptions,
  type LogRateLimitOptions,
  type ResolvedLogRateLimit,
  type ResolvedLoggerConfig,
} from './logger.js';
export { syncDirectory, writeFileAtomic, type AtomicWriteOptions } from './atomic-file.js';
export { KEEP_ALIVE_TIMEOUT_MS } from './http-server.js';
export { uuidV7 } from './ids.js';
export { currentBootId, isProcessAlive, isProcessRunning, parseDescriptorLimit, processIdentity, processStartTime, type ProcessIdentity } from './process.js';
