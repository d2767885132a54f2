import { defineConfig } from "vitest/config";

// Three tiers, run separately by `npm test` so a failure says which tier broke.
// Integration tests share one DynamoDB Local, started once per run by the global setup.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          environment: "node",
        },
      },
      {
        test: {
          name: "infra",
          include: ["test/infra/**/*.test.ts"],
          globalSetup: ["test/infra/global-setup.ts"],
          environment: "node",
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts", "test/e2e/**/*.test.ts"],
          environment: "node",
          globalSetup: ["test/integration/global-setup.ts"],
          // The handlers' environment (local/config.ts) from what the global setup provides.
          setupFiles: ["test/integration/setup-env.ts"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // DynamoDB Local is one JVM on a 2-core machine: parallel files only add contention.
          pool: "forks",
          poolOptions: { forks: { singleFork: true } },
        },
      },
      {
        test: {
          // The short soak (bench/soak-harness.ts): it starts the local stack as a child process
          // with its own DynamoDB Local, so it needs no global setup, and runs alone.
          name: "reliability",
          include: ["test/reliability/**/*.test.ts"],
          environment: "node",
          testTimeout: 540_000,
          hookTimeout: 60_000,
          pool: "forks",
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
