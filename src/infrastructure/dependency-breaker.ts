import CircuitBreaker from 'opossum';
import { DependencyUnavailableError } from '../application/ports.ts';
import { DomainError } from '../domain/errors.ts';

export interface DependencyBreakerOptions {
  /** A call still running after this long fails; its outcome is unknown (it may still complete). */
  readonly timeoutMs: number;
  /** How long the circuit stays open before one trial call may pass. */
  readonly resetMs: number;
  /** Names this breaker in metrics and logs when a dependency has several (default: the dependency). */
  readonly label?: string;
}

type Action = () => Promise<unknown>;

/**
 * A circuit breaker (opossum) in front of one dependency. When most recent calls failed, it opens
 * and fails calls at once instead of piling more onto a dead Redis or database; after `resetMs`
 * one trial call passes, and the first success closes it again, with no restart.
 */
export class DependencyBreaker {
  readonly dependency: 'redis' | 'database';
  readonly label: string;
  private readonly breaker: CircuitBreaker<[Action], unknown>;

  constructor(dependency: 'redis' | 'database', options: DependencyBreakerOptions) {
    this.dependency = dependency;
    this.label = options.label ?? dependency;
    this.breaker = new CircuitBreaker((action: Action) => action(), {
      timeout: options.timeoutMs,
      resetTimeout: options.resetMs,
      errorThresholdPercentage: 50,
      volumeThreshold: 5,
      // Judge by the last second only: a dependency that just died must not hide behind
      // thousands of successes from before.
      rollingCountTimeout: 1_000,
      rollingCountBuckets: 10,
      // A business refusal (name taken, ...) is the dependency working, not failing.
      errorFilter: (error: unknown) => error instanceof DomainError,
    });
  }

  /** False while the circuit is open: calls would fail at once. */
  get isClosed(): boolean {
    return !this.breaker.opened;
  }

  get state(): 'closed' | 'open' | 'half-open' {
    if (this.breaker.halfOpen) return 'half-open';
    return this.breaker.opened ? 'open' : 'closed';
  }

  on(event: 'open' | 'close' | 'halfOpen' | 'failure', listener: () => void): void {
    switch (event) {
      case 'open':
        this.breaker.on('open', listener);
        break;
      case 'close':
        this.breaker.on('close', listener);
        break;
      case 'halfOpen':
        this.breaker.on('halfOpen', listener);
        break;
      case 'failure':
        // opossum reports a timed-out call as a failure too.
        this.breaker.on('failure', listener);
        break;
    }
  }

  async run<T>(operation: string, action: () => Promise<T>): Promise<T> {
    try {
      return (await this.breaker.fire(action)) as T;
    } catch (error) {
      throw this.explain(operation, error);
    }
  }

  shutdown(): void {
    this.breaker.shutdown();
  }

  private explain(operation: string, error: unknown): unknown {
    if (error instanceof DomainError || error instanceof DependencyUnavailableError) return error;
    const code = (error as { code?: unknown } | undefined)?.code;
    if (code === 'EOPENBREAKER') {
      return new DependencyUnavailableError(
        this.dependency,
        `${this.dependency} is unavailable (circuit open after repeated failures) while ${operation}; retry shortly`,
        { cause: error },
      );
    }
    // The driver's text stays in the cause, for the logs; the client hears what to do.
    const timedOut = code === 'ETIMEDOUT';
    return new DependencyUnavailableError(
      this.dependency,
      `${this.dependency} ${timedOut ? 'did not answer in time' : 'unavailable'} while ${operation}; retry shortly`,
      { cause: error, outcomeUnknown: timedOut },
    );
  }
}
