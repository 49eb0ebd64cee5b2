import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingHttpHeaders } from 'node:http';
import {
  type Attributes,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { BuildInfo } from './build-info.ts';

/** OTEL_TRACES_SAMPLER's values, as the OpenTelemetry SDKs name them. */
export const TRACE_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;

export interface TracingSettings {
  /** Where the OTLP/HTTP exporter posts spans (protobuf). */
  readonly tracesUrl: string;
  readonly serviceName: string;
  readonly sampler: (typeof TRACE_SAMPLERS)[number];
  /** The ratio of the traceidratio samplers. */
  readonly samplerRatio: number;
}

/** The headers of an incoming call: Node's (the early refusal) or a fetch `Headers` (connect). */
export type CallHeaders = Headers | IncomingHttpHeaders;

const headersGetter: TextMapGetter<CallHeaders> = {
  get: (headers, key) =>
    headers instanceof Headers
      ? (headers.get(key) ?? undefined)
      : (headers[key] as string | string[] | undefined),
  keys: (headers) => (headers instanceof Headers ? [...headers.keys()] : Object.keys(headers)),
};

/**
 * Spans of the calls this instance serves, made by hand at a few points (the outermost
 * interceptor, the early refusal, the gate and the group commit) rather than by
 * auto-instrumentation, which patches http and every client and would cost on each call. One per
 * app, with a call's span carried in an AsyncLocalStorage of its own: nothing is registered
 * globally, so tests can run several apps, each with its own exporter. Built only when tracing is
 * on; when it is off there is no Tracing, and the hot path checks for none.
 */
export class Tracing {
  private readonly provider: TracerProvider;
  private readonly tracer: Tracer;
  private readonly current = new AsyncLocalStorage<Span>();
  private readonly propagator = new W3CTraceContextPropagator();

  constructor(options: {
    spanProcessors: SpanProcessor[];
    build: BuildInfo;
    serviceName?: string;
    sampler?: Sampler;
  }) {
    this.provider = new TracerProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: options.serviceName ?? 'coupon-service',
        [ATTR_SERVICE_VERSION]: options.build.version,
        'service.instance.id': `${process.pid}@${process.env.HOSTNAME ?? 'localhost'}`,
        'vcs.ref.head.revision': options.build.commit,
        'process.runtime.version': options.build.node,
      }),
      spanProcessors: options.spanProcessors,
      ...(options.sampler ? { sampler: options.sampler } : {}),
    });
    this.tracer = this.provider.getTracer('coupon-service', options.build.version);
  }

  /** Spans batched to an OTLP/HTTP collector, as the standard OTEL_* variables say. */
  static async start(settings: TracingSettings, build: BuildInfo): Promise<Tracing> {
    // Loaded only when tracing is on: the exporter brings protobufjs and its own HTTP agent.
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto');
    return new Tracing({
      spanProcessors: [
        new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: settings.tracesUrl }) }),
      ],
      build,
      serviceName: settings.serviceName,
      sampler: samplerOf(settings),
    });
  }

  /**
   * A server span for a call that arrived with these headers: a child of the caller's span when
   * they carry a W3C `traceparent` (gRPC metadata and HTTP headers alike), else a new trace.
   * `startTime`: a `performance.now()` reading, when the call arrived before the span is made.
   */
  startCall(name: string, headers: CallHeaders, attributes: Attributes, startTime?: number): Span {
    const parent = this.propagator.extract(ROOT_CONTEXT, headers, headersGetter);
    return this.tracer.startSpan(
      name,
      {
        kind: SpanKind.SERVER,
        attributes,
        ...(startTime === undefined ? {} : { startTime: performance.timeOrigin + startTime }),
      },
      parent,
    );
  }

  /** Runs `work` as part of the call `span`: child spans and log lines made meanwhile belong to it. */
  within<T>(span: Span, work: () => T): T {
    return this.current.run(span, work);
  }

  /** A child of the call in progress; undefined outside a call (the reconciler's own work). */
  startChild(name: string, attributes?: Attributes): Span | undefined {
    const call = this.current.getStore();
    if (!call) return undefined;
    return this.tracer.startSpan(
      name,
      { kind: SpanKind.INTERNAL, ...(attributes ? { attributes } : {}) },
      trace.setSpan(ROOT_CONTEXT, call),
    );
  }

  /** `work` in a child span of the call in progress, ended with its outcome (`describe` names it). */
  async inChild<T>(
    name: string,
    attributes: Attributes,
    work: () => Promise<T>,
    describe?: (span: Span, result: T) => void,
  ): Promise<T> {
    const span = this.startChild(name, attributes);
    if (!span) return work();
    try {
      const result = await work();
      describe?.(span, result);
      span.end();
      return result;
    } catch (error) {
      endFailed(span, error);
      throw error;
    }
  }

  /** pino's `mixin`: every log line written inside a call carries its trace and span id. */
  readonly logFields = (): Record<string, string> => {
    const context = this.current.getStore()?.spanContext();
    return context ? { trace_id: context.traceId, span_id: context.spanId } : {};
  };

  /** Sends the spans still buffered, then stops. */
  close(): Promise<void> {
    return this.provider.shutdown();
  }
}

/** Ends `span` as failed by `error`: status ERROR with its message, and the exception as an event. */
export function endFailed(span: Span, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  span.recordException(error instanceof Error ? error : message);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  span.end();
}

function samplerOf(settings: TracingSettings): Sampler {
  const ratio = new TraceIdRatioBasedSampler(settings.samplerRatio);
  switch (settings.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio;
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio });
  }
}
