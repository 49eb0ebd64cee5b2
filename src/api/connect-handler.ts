import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ConnectRouterOptions,
  type ContextValues,
  createConnectRouter,
} from '@connectrpc/connect';
import {
  createAsyncIterable,
  type UniversalHandler,
  type UniversalServerRequest,
} from '@connectrpc/connect/protocol';
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from '@connectrpc/connect-node';
import { parseFailuresAsInvalidArgument } from './parse-failures.ts';

/** http and http2 requests and responses, as connect-node takes them. */
export type NodeServerRequest = Parameters<typeof universalRequestFromNodeRequest>[0];
export type NodeServerResponse = Parameters<typeof universalResponseToNodeResponse>[1];

/** `Earlier`: what an earlier step that judged the request (early-refusal.ts) hands to the call's context. */
export interface ConnectHandlerOptions<Earlier = never> extends ConnectRouterOptions {
  readonly routes: (router: ConnectRouter) => void;
  readonly contextValues?: (request: NodeServerRequest, earlier: Earlier | undefined) => ContextValues;
  /** Told of a call that failed outside its handler, e.g. while writing the answer (connect-node logs these to the console). */
  readonly onHandlerError: (method: string, error: unknown) => void;
}

/**
 * Serves a request with connect. `body`, when given, is the request body an earlier step
 * already read (see early-refusal.ts); connect then reads it from there. `earlier`: what that
 * step found, for `contextValues` (passed along rather than kept in a WeakMap by request: an
 * entry of one cost ~1.3 µs a call).
 */
export type ConnectHandler<Earlier = never> = (
  request: NodeServerRequest,
  response: NodeServerResponse,
  body?: Uint8Array | AsyncIterable<Uint8Array>,
  earlier?: Earlier,
) => void;

/**
 * connect-node's `connectNodeAdapter`, built from the same public parts (a router and the
 * universal request/response converters), plus what the adapter does not do: take over a request
 * whose body was already read, answer 400 to a request it cannot convert, where the adapter
 * throws from the request listener and takes the process down, and answer a request message
 * that does not decode INVALID_ARGUMENT rather than INTERNAL (parse-failures.ts).
 */
export function createConnectHandler<Earlier = never>(
  options: ConnectHandlerOptions<Earlier>,
): ConnectHandler<Earlier> {
  const router = createConnectRouter({
    ...options,
    acceptCompression: options.acceptCompression ?? [compressionGzip, compressionBrotli],
  });
  options.routes(router);
  const handlers = new Map<string, UniversalHandler>(
    router.handlers.map((handler) => [handler.requestPath, handler]),
  );
  return (request, response, body, earlier) => {
    const handler = handlers.get(request.url?.split('?', 2)[0] ?? '');
    if (!handler) {
      response.writeHead(404);
      response.end();
      return;
    }
    let universal: UniversalServerRequest;
    try {
      universal = universalRequestFromNodeRequest(
        request,
        response,
        undefined,
        options.contextValues?.(request, earlier),
      );
    } catch {
      // An HTTP/1.0 request without a Host header: connect-node cannot build its URL.
      response.writeHead(400);
      response.end();
      return;
    }
    // A call answered before its body was read to the end (connect refuses some calls before
    // reading, and stops reading one over the size limit): the rest is drained, never left to be
    // parsed as the next request. And connect must not stop reading by destroying the request (a
    // stream's own async iterator does that on an early exit): on HTTP/1.1 that closes the
    // keep-alive connection under a client that was told to keep it, and its next call is reset.
    // The request timeout bounds how long a client may keep sending.
    response.once('finish', () => {
      if (!request.readableEnded) request.resume();
    });
    const requestBody =
      body === undefined
        ? unreadBody(request)
        : body instanceof Uint8Array
          ? createAsyncIterable([body])
          : body;
    handler({ ...universal, body: requestBody })
      .then((answer) => {
        const corrected = parseFailuresAsInvalidArgument(answer);
        return corrected instanceof Promise
          ? corrected.then((fixed) => universalResponseToNodeResponse(fixed, response))
          : universalResponseToNodeResponse(corrected, response);
      })
      .catch((error: unknown) => {
        // Aborted: the client went away mid-call, nothing is wrong here.
        if (ConnectError.from(error).code !== Code.Aborted)
          options.onHandlerError(handler.method.name, error);
      });
  };
}

/** The request body as connect reads it; leaving the loop early pauses the request instead of destroying it. */
export function unreadBody(request: NodeServerRequest): AsyncIterable<Uint8Array> {
  return request.iterator({ destroyOnReturn: false });
}
