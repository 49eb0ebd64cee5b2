/** One item of a batch that failed on its own; its caller gets `error`, the others their results. */
export class ItemFailure {
  readonly error: unknown;
  constructor(error: unknown) {
    this.error = error;
  }
}

/**
 * Coalesces calls made in the same turn of the event loop into one call per key: under load many
 * requests arrive per turn, and one Redis command for all of them costs about as much as one for
 * each would cost alone. Items keep their arrival order; each caller gets its own result.
 */
export class TickBatcher<Item, Result> {
  private readonly run: (key: string, items: Item[]) => Promise<readonly (Result | ItemFailure)[]>;
  private readonly maxBatch: number;
  private pending = new Map<
    string,
    { items: Item[]; waiting: { resolve(result: Result): void; reject(error: unknown): void }[] }
  >();
  private flushScheduled = false;

  /**
   * `run` gets a key's items in arrival order, at most `maxBatch` at a time, and answers one
   * result per item in the same order (an ItemFailure fails that item's caller alone); if it
   * throws, every item of that call fails with it.
   */
  constructor(
    run: (key: string, items: Item[]) => Promise<readonly (Result | ItemFailure)[]>,
    maxBatch: number,
  ) {
    this.run = run;
    this.maxBatch = maxBatch;
  }

  add(key: string, item: Item): Promise<Result> {
    return new Promise((resolve, reject) => {
      let batch = this.pending.get(key);
      if (!batch) {
        batch = { items: [], waiting: [] };
        this.pending.set(key, batch);
      }
      batch.items.push(item);
      batch.waiting.push({ resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const batches = this.pending;
    this.pending = new Map();
    for (const [key, batch] of batches) {
      for (let start = 0; start < batch.items.length; start += this.maxBatch) {
        const waiting = batch.waiting.slice(start, start + this.maxBatch);
        // Called through a promise, so even a `run` that throws at once answers its callers.
        Promise.resolve(batch.items.slice(start, start + this.maxBatch))
          .then((items) => this.run(key, items))
          .then(
            (results) => {
              for (let i = 0; i < waiting.length; i++) {
                const result = results[i];
                if (result instanceof ItemFailure) waiting[i]?.reject(result.error);
                else waiting[i]?.resolve(result as Result);
              }
            },
            (error: unknown) => {
              for (const caller of waiting) caller.reject(error);
            },
          );
      }
    }
  }
}
