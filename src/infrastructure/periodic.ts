/**
 * Runs `task` every `intervalMs`, never two at once, until stopped. `stop()` waits for a run in
 * progress, so nothing touches a store after it is closed.
 */
export function runPeriodically(task: () => Promise<void>, intervalMs: number): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = task().finally(() => {
      running = undefined;
    });
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
