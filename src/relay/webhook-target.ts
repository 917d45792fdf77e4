/**
 * Where a webhook may point (docs/protocol.md §3.8, our choice): an absolute http(s) URL of at
 * most 2048 characters without credentials, whose host is not this machine or a private network.
 * A relay that POSTs wherever an agent says is otherwise a way into the operator's network
 * (SSRF), so addresses that are loopback, private (RFC 1918, fc00::/7), link-local, unspecified,
 * CGNAT (100.64/10), multicast or reserved are refused — unless the operator allows them
 * (`allowPrivateWebhooks`, `mrp relay --allow-private-webhooks`; `mrp dev` does).
 *
 * Checked twice: at PUT on the URL as written (an IP literal or `localhost`), and at delivery on
 * every address the host name resolves to (`guardedLookup`), so a name that later resolves to a
 * private address (DNS rebinding) is refused when it matters. IPv6 addresses that carry an IPv4
 * address (mapped, compatible, translated, NAT64, 6to4) are checked as the IPv4 address they carry.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { ApiError } from './errors.js';

/** Longest webhook URL accepted (our choice). */
export const WEBHOOK_URL_MAX = 2048;

const REFUSED = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local (cloud metadata lives here)
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  REFUSED.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const) {
  REFUSED.addSubnet(net, bits, 'ipv6');
}

/** True for an address a webhook may not reach without `allowPrivateWebhooks`. */
export function isRefusedAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  if (family === 4) return REFUSED.check(address, 'ipv4');
  // BlockList checks an IPv4-mapped IPv6 address (::ffff:a.b.c.d) against the IPv4 rules too.
  if (REFUSED.check(address, 'ipv6')) return true;
  const embedded = embeddedIpv4(address);
  return embedded === 'refuse' || (embedded !== undefined && REFUSED.check(embedded, 'ipv4'));
}

/**
 * The IPv4 address an IPv6 address carries to an IPv4 host, for the forms a gateway or the host
 * itself may translate: NAT64 (64:ff9b::/96, RFC 6052), IPv4-compatible (::/96) and
 * IPv4-translated (::ffff:0:0/96) addresses, 6to4 (2002::/16). `refuse` for the prefixes whose
 * IPv4 address cannot be read back but may be private: local-use NAT64 (64:ff9b:1::/48, RFC 8215)
 * and Teredo (2001::/32). So `64:ff9b::a9fe:a9fe` does not reach 169.254.169.254 through a NAT64
 * gateway (cloud NAT gateways translate to private addresses too).
 */
function embeddedIpv4(address: string): string | 'refuse' | undefined {
  const w = ipv6Words(address);
  if (!w) return 'refuse';
  const v4 = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  const zero = (from: number, to: number): boolean => w.slice(from, to).every((x) => x === 0);
  if (w[0] === 0x64 && w[1] === 0xff9b && zero(2, 6)) return v4(w[6]!, w[7]!);
  if (w[0] === 0x64 && w[1] === 0xff9b && w[2] === 1) return 'refuse';
  if (zero(0, 6)) return v4(w[6]!, w[7]!);
  if (zero(0, 4) && w[4] === 0xffff && w[5] === 0) return v4(w[6]!, w[7]!);
  if (w[0] === 0x2002) return v4(w[1]!, w[2]!);
  if (w[0] === 0x2001 && w[1] === 0) return 'refuse';
  return undefined;
}

/** The eight 16-bit words of a valid IPv6 address (`isIP` said 6), a zone id dropped. */
function ipv6Words(address: string): number[] | undefined {
  let text = address.split('%')[0]!.toLowerCase();
  const dotted = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(2).map(Number) as [number, number, number, number];
    text = `${dotted[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const gap = halves.length === 2 ? 8 - head.length - tail.length : 0;
  if (gap < 0) return undefined;
  const words = [...head, ...Array<string>(gap).fill('0'), ...tail].map((x) => Number.parseInt(x, 16));
  return words.length === 8 && words.every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffff) ? words : undefined;
}

function refused(url: string, why: string): ApiError {
  return new ApiError('webhook_url_refused', `url ${url} ${why}; this relay delivers only to public addresses`, {
    details: { field: 'url', reason: why },
  });
}

/**
 * Checks a webhook URL as registered (PUT): shape, length, scheme, no credentials, and — unless
 * `allowPrivate` — a host that is not an IP literal or name of a refused address. Returns the
 * normalised URL text. Throws an `ApiError` naming the field.
 */
export function checkWebhookUrl(value: unknown, allowPrivate: boolean): string {
  const bad = (reason: string): ApiError =>
    new ApiError('bad_request', `url: ${reason}`, { details: { field: 'url', reason } });
  if (typeof value !== 'string' || value === '') throw bad('must be an absolute http or https URL');
  if (value.length > WEBHOOK_URL_MAX) throw bad(`must be at most ${WEBHOOK_URL_MAX} characters`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw bad('must be an absolute http or https URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad('must be an http or https URL');
  if (url.username !== '' || url.password !== '') throw bad('must not contain credentials (user:password@)');
  if (url.hostname === '') throw bad('must name a host');
  const text = url.href;
  if (text.length > WEBHOOK_URL_MAX) throw bad(`must be at most ${WEBHOOK_URL_MAX} characters`);
  if (!allowPrivate) {
    const host = hostOf(url);
    if (isIP(host) !== 0 && isRefusedAddress(host))
      throw refused(value, 'is a loopback, private, link-local or reserved address');
    if (host === 'localhost' || host.endsWith('.localhost')) throw refused(value, 'names this machine');
  }
  return text;
}

/** A URL's host without the brackets of an IPv6 literal or a final dot, lower-cased. */
export function hostOf(url: URL): string {
  const h = url.hostname.toLowerCase().replace(/\.$/, '');
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

/** Resolves a host name to all its addresses (`dns.lookup` with `all: true`; injectable for tests). */
export type HostResolver = (
  hostname: string,
  family: number,
  callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;

/** The system resolver (what node:http would have used). */
export const systemResolver: HostResolver = (hostname, family, callback) =>
  dnsLookup(hostname, { all: true, family }, (err, addresses) => callback(err, err ? [] : addresses));

/** The error a guarded lookup fails with; the delivery counts as failed. */
export class RefusedAddressError extends Error {
  override name = 'RefusedAddressError';
  readonly code = 'EWEBHOOKREFUSED';
}

/**
 * A `lookup` for node:http(s) that resolves like the system does and refuses the connection when
 * any resolved address is refused (so a name cannot smuggle a private address in among public
 * ones either).
 */
export function guardedLookup(resolve: HostResolver = systemResolver): LookupFunction {
  return (hostname, options, callback) => {
    const family =
      options.family === 'IPv4'
        ? 4
        : options.family === 'IPv6'
          ? 6
          : typeof options.family === 'number'
            ? options.family
            : 0;
    resolve(hostname, family, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const list = Array.isArray(addresses) ? addresses : [];
      const bad = list.find((a) => isRefusedAddress(a.address));
      if (list.length === 0 || bad) {
        return callback(
          new RefusedAddressError(`${hostname} resolves to ${bad?.address ?? 'nothing'}, which webhooks may not reach`),
          '',
          0,
        );
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
      callback(null, list[0]!.address, list[0]!.family);
    });
  };
}
