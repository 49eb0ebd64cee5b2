import type http from 'node:http';
import net from 'node:net';
import { createContextKey } from '@connectrpc/connect';
import ipaddr from 'ipaddr.js';
import proxyaddr from 'proxy-addr';
import type { NodeServerRequest } from './connect-handler.ts';

/**
 * Which proxies in front of the service may be believed about the client's address: none (the
 * socket's address is the client's), the nearest `hops` proxies, or proxies by address, CIDR or
 * the names `loopback`, `linklocal`, `uniquelocal`. The semantics of `proxy-addr` (Express's
 * `trust proxy`): X-Forwarded-For is read from the right, past trusted hops only, so hops a client
 * wrote itself are never taken.
 */
export type TrustedProxies = false | { readonly hops: number } | { readonly addresses: readonly string[] };

/** Throws a TypeError naming the entry when an address or CIDR is not one. */
export function compileTrustedProxies(trusted: TrustedProxies): (address: string, hop: number) => boolean {
  if (trusted === false) return () => false;
  if ('hops' in trusted) return (_address, hop) => hop < trusted.hops;
  return proxyaddr.compile([...trusted.addresses]);
}

/** The client address a request resolves to, or the forwarded text that is no address at all. */
export type ClientAddress = { readonly address: string } | { readonly invalid: string };

/** Resolved only when asked (only the per-address limit asks), so other calls pay nothing for it. */
export const clientAddressKey = createContextKey<() => ClientAddress>(() => ({ address: 'unknown' }), {
  description: 'client address',
});

/** The client address of a request: the socket's, or the nearest untrusted X-Forwarded-For hop. */
export function clientAddress(
  request: NodeServerRequest,
  trust: (address: string, hop: number) => boolean,
): ClientAddress {
  // proxy-addr reads only the X-Forwarded-For header and the socket's address, which HTTP/2 requests have too.
  const address = proxyaddr(request as http.IncomingMessage, trust);
  if (net.isIP(address) === 0) return { invalid: address };
  return { address: clientOf(address) };
}

/**
 * The unit a client is limited by: an IPv4 address, or an IPv6 /64. A subscriber gets at least a
 * /64 and may use any address in it, so per-address buckets would be 2^64 buckets for one client.
 * "::ffff:192.0.2.1" is 192.0.2.1.
 */
function clientOf(address: string): string {
  const parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv4') return parsed.toString();
  const ipv6 = parsed as ipaddr.IPv6;
  if (ipv6.isIPv4MappedAddress()) return ipv6.toIPv4Address().toString();
  return `${ipv6.parts
    .slice(0, 4)
    .map((part) => part.toString(16))
    .join(':')}::/64`;
}
