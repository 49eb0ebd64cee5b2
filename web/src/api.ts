import { createClient, type Interceptor, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-web';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';

const ADMIN_TOKEN_KEY = 'coupon-console.admin-token';
const PROTOCOL_KEY = 'coupon-console.protocol';

/**
 * The admin token lives in sessionStorage: typed once per tab, gone when the tab closes, and
 * sent only as the bearer header (never in a URL, where logs and history would keep it).
 */
export const adminToken = {
  get: (): string => sessionStorage.getItem(ADMIN_TOKEN_KEY) ?? '',
  set(token: string) {
    if (token) sessionStorage.setItem(ADMIN_TOKEN_KEY, token);
    else sessionStorage.removeItem(ADMIN_TOKEN_KEY);
  },
};

export type Protocol = 'connect' | 'grpc-web';

export const protocolChoice = {
  get: (): Protocol => (localStorage.getItem(PROTOCOL_KEY) === 'grpc-web' ? 'grpc-web' : 'connect'),
  set: (protocol: Protocol) => localStorage.setItem(PROTOCOL_KEY, protocol),
};

const bearer: Interceptor = (next) => (request) => {
  const token = adminToken.get();
  if (token) request.header.set('authorization', `Bearer ${token}`);
  return next(request);
};

function transportFor(protocol: Protocol): Transport {
  // Same origin: the console is served by the service it calls, so no CORS is involved.
  const options = { baseUrl: window.location.origin, interceptors: [bearer] };
  return protocol === 'grpc-web' ? createGrpcWebTransport(options) : createConnectTransport(options);
}

export const couponClient = createClient(CouponService, transportFor(protocolChoice.get()));
