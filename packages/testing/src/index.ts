// Public API of @airlock/testing: helpers that Airlock's tests share. Test-only: import it from tests, declare it as a devDependency.
export { captureLogger, type CapturedLogger, type CaptureLoggerOptions, type LogLine } from './capture-logger.js';
export { awsCliEnv, type AwsCliEnvOptions } from './aws-cli-env.js';
export {
  CANARY_ENCODINGS,
  makeCanary,
  scanForCanary,
  type CanaryEncoding,
  type CanaryHit,
  type CanaryScanResult,
  type ScanForCanaryOptions,
} from './canary.js';
export {
  findPostgresBinDir,
  postgresAvailable,
  SKIP_POSTGRES_ENV,
  startTempPostgres,
  type TempPostgres,
  type TempPostgresOptions,
} from './temp-postgres.js';
export { partialClientHello } from './tls-probes.js';
export { startTcpProxy, type TcpProxy, type TcpProxyMode } from './tcp-proxy.js';
