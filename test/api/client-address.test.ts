import { describe, expect, it } from 'vitest';
import { clientAddress, compileTrustedProxies } from '../../src/api/client-address.ts';
import type { NodeServerRequest } from '../../src/api/connect-handler.ts';

function request(socketAddress: string, forwardedFor?: string): NodeServerRequest {
  return {
    headers: forwardedFor ? { 'x-forwarded-for': forwardedFor } : {},
    socket: { remoteAddress: socketAddress },
    connection: { remoteAddress: socketAddress },
  } as unknown as NodeServerRequest;
}

describe('the client a request is limited as', () => {
  const none = compileTrustedProxies(false);
  const oneHop = compileTrustedProxies({ hops: 1 });
  const loopback = compileTrustedProxies({ addresses: ['loopback'] });

  it('is the socket address when no proxy is trusted, whatever the header says', () => {
    expect(clientAddress(request('192.0.2.1', '198.51.100.7'), none)).toEqual({ address: '192.0.2.1' });
  });

  it('is the hop the trusted proxy wrote, never one the client wrote before it', () => {
    expect(clientAddress(request('127.0.0.1', 'forged, 198.51.100.7'), oneHop)).toEqual({
      address: '198.51.100.7',
    });
    expect(clientAddress(request('127.0.0.1', '203.0.113.9, 198.51.100.7'), loopback)).toEqual({
      address: '198.51.100.7',
    });
    // Not from a trusted proxy: the header is the client's own word.
    expect(clientAddress(request('192.0.2.1', '198.51.100.7'), loopback)).toEqual({ address: '192.0.2.1' });
  });

  it('is one bucket per IPv6 /64, and IPv4-mapped addresses are IPv4', () => {
    expect(clientAddress(request('2001:db8:1:2::1'), none)).toEqual({ address: '2001:db8:1:2::/64' });
    expect(clientAddress(request('2001:db8:1:2:ffff:ffff:ffff:fffe'), none)).toEqual({
      address: '2001:db8:1:2::/64',
    });
    expect(clientAddress(request('::ffff:192.0.2.1'), none)).toEqual({ address: '192.0.2.1' });
  });

  it('refuses a forwarded value that is no address', () => {
    expect(clientAddress(request('127.0.0.1', 'not-an-ip'), oneHop)).toEqual({ invalid: 'not-an-ip' });
  });
});
