// CORS as S3 evaluates it: the first rule of a bucket's configuration that matches a request's Origin, method and (for a preflight) headers, and the response headers it grants.
import type { CorsRule } from './engine-types.js';

/** A pattern with at most one `*` (S3's limit) as a whole-string matcher. */
function wildcard(pattern: string, flags = ''): RegExp {
  const escaped = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${escaped.join('.*')}$`, flags);
}

function originAllowed(rule: CorsRule, origin: string): boolean {
  return rule.allowedOrigins.some((allowed) => wildcard(allowed).test(origin));
}

function headerAllowed(rule: CorsRule, name: string): boolean {
  return rule.allowedHeaders.some((allowed) => wildcard(allowed, 'i').test(name));
}

/** Access-Control-Request-Headers as a list of names (lower-case, as browsers send them). */
export function requestedHeaders(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '');
}

/**
 * The rule S3 applies: the first whose origins include `origin` and whose methods include
 * `method`; for a preflight, every requested header must be allowed too.
 */
export function matchCorsRule(rules: readonly CorsRule[], request: { readonly origin: string; readonly method: string; readonly headers?: readonly string[] }): CorsRule | undefined {
  return rules.find(
    (rule) =>
      originAllowed(rule, request.origin) &&
      (rule.allowedMethods as readonly string[]).includes(request.method) &&
      (request.headers ?? []).every((name) => headerAllowed(rule, name)),
  );
}

/** Every CORS answer varies with these request headers, whether or not a rule matched. */
export const CORS_VARY = 'Origin, Access-Control-Request-Headers, Access-Control-Request-Method';

/**
 * The headers a matched rule grants. A rule that allows any origin answers `*`, without
 * credentials; otherwise the origin is echoed and credentials are allowed, as S3 does. A preflight
 * also gets the requested headers back.
 */
export function corsResponseHeaders(rule: CorsRule, origin: string, preflightHeaders?: readonly string[]): Record<string, string> {
  const anyOrigin = rule.allowedOrigins.includes('*');
  const headers: Record<string, string> = {
    'access-control-allow-origin': anyOrigin ? '*' : origin,
    'access-control-allow-methods': rule.allowedMethods.join(', '),
    vary: CORS_VARY,
  };
  if (!anyOrigin) headers['access-control-allow-credentials'] = 'true';
  if (preflightHeaders !== undefined && preflightHeaders.length > 0) headers['access-control-allow-headers'] = preflightHeaders.join(', ');
  if (rule.exposeHeaders.length > 0) headers['access-control-expose-headers'] = rule.exposeHeaders.join(', ');
  if (rule.maxAgeSeconds !== undefined) headers['access-control-max-age'] = String(rule.maxAgeSeconds);
  return headers;
}
