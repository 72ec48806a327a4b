// Tests of the small shared helpers: the captured logger keeps lines and still redacts; the AWS CLI environment inherits nothing but PATH.
import { registerSecretValue } from '@airlock/common';
import { describe, expect, it } from 'vitest';
import { awsCliEnv } from './aws-cli-env.js';
import { captureLogger } from './capture-logger.js';
import { makeCanary } from './canary.js';

describe('captureLogger', () => {
  it('keeps debug lines, parsed and raw, and redacts registered secrets as production does', () => {
    const secret = makeCanary('logged-secret');
    registerSecretValue(secret);
    const logs = captureLogger('helpers-test');
    logs.log.debug({ event: 'probe', note: `value ${secret}` }, 'hello');
    expect(logs.lines).toHaveLength(1);
    expect(logs.lines[0]).toMatchObject({ event: 'probe', msg: 'hello', name: 'helpers-test' });
    expect(logs.text()).toContain('"event":"probe"');
    expect(logs.text()).not.toContain(secret);
  });
});

describe('awsCliEnv', () => {
  it('sets the credentials, region and CA bundle, and inherits only PATH', () => {
    process.env.AWS_PROFILE = 'should-not-leak';
    try {
      const env = awsCliEnv({ credentials: { accessKeyId: 'AKID', secretAccessKey: 'SECRET' }, caBundlePath: '/tmp/ca.pem', home: '/tmp/home' });
      expect(env).toEqual({
        PATH: process.env.PATH,
        HOME: '/tmp/home',
        AWS_ACCESS_KEY_ID: 'AKID',
        AWS_SECRET_ACCESS_KEY: 'SECRET',
        AWS_DEFAULT_REGION: 'us-east-1',
        AWS_CA_BUNDLE: '/tmp/ca.pem',
        AWS_PAGER: '',
        AWS_EC2_METADATA_DISABLED: 'true',
      });
    } finally {
      delete process.env.AWS_PROFILE;
    }
  });
});
