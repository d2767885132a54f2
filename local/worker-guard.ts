/**
 * Preloaded into every local worker process (`--import`, after tsx). The workers run in their own
 * process group, so a Ctrl-C in the terminal reaches only the local stack, which drains them with
 * one SIGTERM; but if the stack's process dies without stopping them (killed, crashed), nothing
 * would signal them. The IPC channel to the stack closes with its process: the worker then
 * drains and exits as on SIGTERM, instead of running on as an orphan.
 */

/** Past the worker's own drain (JOBQ_SHUTDOWN_GRACE_SECONDS) by this much, it is ended outright. */
const EXIT_AFTER_DRAIN_MS = 10_000;

if (process.channel) {
  // The channel alone must not keep a worker alive.
  process.channel.unref();
  process.once("disconnect", () => {
    // Nobody reads the output any more: a write to the dead pipe must not fail in a loop.
    for (const stream of [process.stdout, process.stderr]) stream.on("error", () => undefined);
    const graceSeconds = Number(process.env.JOBQ_SHUTDOWN_GRACE_SECONDS ?? "25");
    // The stack's emulators died with it, so the drain may not finish by itself.
    setTimeout(
      () => process.exit(1),
      (Number.isFinite(graceSeconds) ? graceSeconds * 1000 : 25_000) + EXIT_AFTER_DRAIN_MS,
    ).unref();
    process.kill(process.pid, "SIGTERM");
  });
}
