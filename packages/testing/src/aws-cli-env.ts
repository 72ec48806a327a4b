// The environment for running the real AWS CLI (/usr/bin/aws) against an Airlock endpoint in a test: explicit credentials, the test CA, nothing inherited.
export interface AwsCliEnvOptions {
  /** The access key the server accepts. */
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** Path of a PEM file holding the CA that signed the server certificate (AWS_CA_BUNDLE takes a path, not PEM text). */
  readonly caBundlePath: string;
  /**
   * HOME for the CLI: a test's temporary directory, so that no ~/.aws/config or credentials file of the
   * machine (a profile, a region, s3.signature_version) changes what the test sees.
   */
  readonly home: string;
  /** @default "us-east-1" */
  readonly region?: string;
}

/**
 * A complete environment (not merged into process.env) for `execFile('/usr/bin/aws', …, { env })`: only
 * PATH is inherited, so that stray AWS_* variables, proxies or profiles of the machine cannot leak in.
 */
export function awsCliEnv(options: AwsCliEnvOptions): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: options.home,
    AWS_ACCESS_KEY_ID: options.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: options.credentials.secretAccessKey,
    AWS_DEFAULT_REGION: options.region ?? 'us-east-1',
    AWS_CA_BUNDLE: options.caBundlePath,
    // Without this the CLI pipes output through `less`, which hangs without a terminal.
    AWS_PAGER: '',
    // Never spend seconds probing an instance-metadata endpoint for credentials or a region.
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}
