import { cors as connectCors } from '@connectrpc/connect';
import cors from 'cors';

/**
 * CORS for Connect-Web and gRPC-Web browsers, with the header lists connect publishes for its
 * protocols. An origin that is not allowed gets no Access-Control-Allow-Origin header at all.
 */
export function corsMiddleware(allowedOrigins: readonly string[]) {
  return cors({
    origin: allowedOrigins.includes('*') ? '*' : [...allowedOrigins],
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, 'Authorization'],
    exposedHeaders: [...connectCors.exposedHeaders],
    maxAge: 2 * 60 * 60,
  });
}
