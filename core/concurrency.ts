/**
 * Runs `work` over `inputs` with at most `concurrency` calls in flight: enough to hide the
 * latency of AWS calls, few enough not to be throttled. Pure: no I/O of its own.
 */
export async function forEachConcurrent<T>(
  inputs: readonly T[],
  concurrency: number,
  work: (input: T) => Promise<void>,
): Promise<void> {
  const pending = [...inputs];
  const runner = async (): Promise<void> => {
    for (let input = pending.shift(); input !== undefined; input = pending.shift()) await work(input);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, pending.length) }, runner));
}
