// CORS rule matching: first match wins, one wildcard, literal dots, case rules for origins and headers.
import { describe, expect, it } from 'vitest';
import { matchCorsRule, requestedHeaders } from './cors.js';
import type { CorsRule } from './engine-types.js';

const rule = (over: Partial<CorsRule>): CorsRule => ({ allowedOrigins: ['*'], allowedMethods: ['GET'], allowedHeaders: [], exposeHeaders: [], ...over });

describe('matchCorsRule', () => {
  it('takes the first rule that allows origin, method and every requested header', () => {
    const first = rule({ id: 'first', allowedOrigins: ['https://a.test'], allowedMethods: ['PUT'], allowedHeaders: ['content-type'] });
    const second = rule({ id: 'second', allowedMethods: ['PUT', 'GET'], allowedHeaders: ['*'] });
    expect(matchCorsRule([first, second], { origin: 'https://a.test', method: 'PUT', headers: ['content-type'] })?.id).toBe('first');
    expect(matchCorsRule([first, second], { origin: 'https://a.test', method: 'PUT', headers: ['x-amz-date'] })?.id).toBe('second');
    expect(matchCorsRule([first], { origin: 'https://a.test', method: 'GET' })).toBeUndefined();
  });

  it('reads dots literally, origins case-sensitively and header names case-insensitively', () => {
    const rules = [rule({ allowedOrigins: ['https://*.a.test'], allowedHeaders: ['X-Amz-*'] })];
    expect(matchCorsRule(rules, { origin: 'https://x.a.test', method: 'GET', headers: ['x-amz-meta-a'] })).toBeDefined();
    expect(matchCorsRule(rules, { origin: 'https://x.aXtest', method: 'GET' })).toBeUndefined();
    expect(matchCorsRule(rules, { origin: 'https://X.A.TEST', method: 'GET' })).toBeUndefined();
    expect(matchCorsRule(rules, { origin: 'https://x.a.test', method: 'GET', headers: ['authorization'] })).toBeUndefined();
  });
});

describe('requestedHeaders', () => {
  it('splits and lower-cases Access-Control-Request-Headers', () => {
    expect(requestedHeaders(' Content-Type,X-Amz-Date ,, ')).toEqual(['content-type', 'x-amz-date']);
    expect(requestedHeaders(undefined)).toEqual([]);
  });
});
