import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ConnectRouterOptions,
  type ContextValues,
  createConnectRouter,
} from '@connectrpc/connect';
import { createAsyncIterable, type UniversalHandler } from '@connectrpc/connect/protocol';
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from '@connectrpc/connect-node';

/** http and http2 requests and responses, as connect-node takes them. */
export type NodeServerRequest = Parameters<typeof universalRequestFromNodeRequest>[0];
export type NodeServerResponse = Parameters<typeof universalResponseToNodeResponse>[1];

export interface ConnectHandlerOptions extends ConnectRouterOptions {
  readonly routes: (router: ConnectRouter) => void;
  readonly contextValues?: (request: NodeServerRequest) => ContextValues;
  /** Told of a handler that failed outside any call (connect-node logs these to the console). */
  readonly onHandlerError?: (method: string, error: unknown) => void;
}

/**
 * Serves a request with connect. `body`, when given, is the request body an earlier step
 * already read (see early-refusal.ts); connect then reads it from there.
 */
export type ConnectHandler = (
  request: NodeServerRequest,
  response: NodeServerResponse,
  body?: Uint8Array | AsyncIterable<Uint8Array>,
) => void;

/**
 * connect-node's `connectNodeAdapter`, built from the same public parts (a router and the
 * universal request/response converters), plus the one thing the adapter cannot do: take over a
 * request whose body was already read.
 */
export function createConnectHandler(options: ConnectHandlerOptions): ConnectHandler {
  const router = createConnectRouter({
    ...options,
    acceptCompression: options.acceptCompression ?? [compressionGzip, compressionBrotli],
  });
  options.routes(router);
  const handlers = new Map<string, UniversalHandler>(
    router.handlers.map((handler) => [handler.requestPath, handler]),
  );
  return (request, response, body) => {
    const handler = handlers.get(request.url?.split('?', 2)[0] ?? '');
    if (!handler) {
      response.writeHead(404);
      response.end();
      return;
    }
    const universal = universalRequestFromNodeRequest(
      request,
      response,
      undefined,
      options.contextValues?.(request),
    );
    handler(
      body === undefined
        ? universal
        : { ...universal, body: body instanceof Uint8Array ? createAsyncIterable([body]) : body },
    )
      .then((answer) => universalResponseToNodeResponse(answer, response))
      .catch((error: unknown) => {
        // Aborted: the client went away mid-call, nothing is wrong here.
        if (ConnectError.from(error).code !== Code.Aborted)
          options.onHandlerError?.(handler.method.name, error);
      });
  };
}
