/**
 * Which hosts may receive a client's credentials. The token endpoint comes from the discovery document, whose
 * text the broker does not control (a tampered, misconfigured or hijacked document could name any host), so
 * before anything is sent its host must be approved: by the client's own `tokenEndpointHosts`, else by being the
 * issuer's host or matching the deployment's `tokenBroker.tokenEndpointHosts`.
 *
 * A host pattern is spelled the way a URL's `host` reads: a lowercase DNS name, `:port` only when the port is not
 * 443. It is an exact host, or `*.` and at least `minWildcardFixedLabels` fixed labels, where `*` is exactly one
 * DNS label (`*.auth.us-east-1.amazoncognito.com` covers `pool.auth.us-east-1.amazoncognito.com`, neither
 * `auth.us-east-1.amazoncognito.com` nor `a.b.auth.us-east-1.amazoncognito.com`).
 */

/**
 * Fewer fixed labels would let one pattern cover a whole registrable domain or a shared suffix (`*.com`,
 * `*.co.uk`, `*.amazoncognito.com`), where anyone can register a host.
 */
export const minWildcardFixedLabels = 3;

// A DNS label: letters, digits and inner hyphens. A dotted IPv4 address is labels of digits, so it passes too.
const hostLabel = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const hostLabelPattern = new RegExp(`^${hostLabel}$`);
const endpointHostPattern = new RegExp(`^${hostLabel}(?:\\.${hostLabel})*(?::\\d{1,5})?$`);
const maxHostNameLength = 253;
const wildcardPrefix = '*.';

/**
 * Whether `value` is a host as a URL's `host` reads it. Round-tripping through URL rejects every other
 * spelling: uppercase, a default port, IPv4 shorthand, a trailing dot. Only such a host is repeated in a log line.
 */
export function isPlainHost(value: unknown): value is string {
  if (typeof value !== 'string' || !endpointHostPattern.test(value)) return false;
  if ((value.split(':')[0] as string).length > maxHostNameLength) return false;
  try {
    return new URL(`https://${value}`).host === value;
  } catch {
    return false;
  }
}

/** What is wrong with a host pattern, or undefined when it is one. */
export function hostPatternProblem(value: unknown): string | undefined {
  const shape =
    'must be a lowercase DNS host name, with :port only when the port is not 443 (e.g. auth.example.com or ' +
    `auth.example.com:8443), optionally starting with *. for exactly one label; no scheme or path`;
  if (typeof value !== 'string') return shape;
  if (!value.startsWith(wildcardPrefix)) return isPlainHost(value) ? undefined : shape;
  const fixed = value.slice(wildcardPrefix.length);
  if (!isPlainHost(fixed)) return shape;
  const labels = (fixed.split(':')[0] as string).split('.');
  // A top-level domain is never all digits: such a "suffix" is the tail of an IP address.
  if (labels.length < minWildcardFixedLabels || /^\d+$/.test(labels[labels.length - 1] as string)) {
    return (
      `is too broad: a wildcard needs at least ${minWildcardFixedLabels} fixed DNS labels after *. ` +
      '(e.g. *.auth.us-east-1.amazoncognito.com); list exact hosts otherwise'
    );
  }
  return undefined;
}

/** Checks a list of host patterns named `at` (a setting's path or a variable), adding each problem. */
export function checkHostPatterns(value: unknown, at: string, problems: string[]): void {
  if (!Array.isArray(value) || value.length === 0) {
    problems.push(`${at}: must be a non-empty array of host names`);
    return;
  }
  value.forEach((pattern, index) => {
    const problem = hostPatternProblem(pattern);
    if (problem !== undefined) problems.push(`${at}[${index}]: ${problem}`);
  });
  if (new Set(value).size !== value.length) problems.push(`${at}: must not repeat a host`);
}

/** Whether `host` (a URL's `host`) matches `pattern`; `*` stands for exactly one DNS label. */
export function matchesHostPattern(host: string, pattern: string): boolean {
  if (!pattern.startsWith(wildcardPrefix)) return host === pattern;
  const suffix = pattern.slice(wildcardPrefix.length - 1);
  if (!host.endsWith(suffix)) return false;
  return hostLabelPattern.test(host.slice(0, host.length - suffix.length));
}

export interface TokenEndpointApproval {
  /** The client's own `tokenEndpointHosts`: when set, the only hosts approved for it. */
  clientHosts: readonly string[] | undefined;
  /** The host of the issuer derived from the client's wellKnownUrl. */
  issuerHost: string;
  /** The deployment's `tokenBroker.tokenEndpointHosts`. */
  deploymentHosts: readonly string[];
}

/** Whether the client's credentials may be sent to a token endpoint on `host` (a URL's `host`). */
export function isApprovedTokenEndpointHost(host: string, approval: TokenEndpointApproval): boolean {
  if (approval.clientHosts !== undefined) {
    return approval.clientHosts.some((pattern) => matchesHostPattern(host, pattern));
  }
  return host === approval.issuerHost || approval.deploymentHosts.some((pattern) => matchesHostPattern(host, pattern));
}
