import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The dashboard is a static bundle: index.html at / and everything else under /assets/, which are
// the only paths the local stack serves it on (every other unknown path stays the API's JSON 404).
// esbuild compiles the JSX for Preact, so no Babel preset is needed.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "./",
  // jsxDev off: the bundle must not depend on NODE_ENV (vitest sets it to "test" while it builds).
  esbuild: { jsx: "automatic", jsxImportSource: "preact", jsxDev: false },
  mode: "production",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
  },
});
