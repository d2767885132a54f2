import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * Imports point down: functions/ → app/ → store/ → core/. A use case that imported an adapter
 * (functions/config.ts, functions/routes.ts, …) would drag the HTTP edge into the worker image
 * and into every test of the use case, and tie the lower layers to one kind of caller.
 *
 * Read from the source files themselves with TypeScript's own import scanner, so static, type-only,
 * side-effect, re-export, dynamic `import()` and `require()` specifiers are all seen, and comments
 * that merely mention a path are not.
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface LayerRule {
  /** The top-level folders a file of this layer may import from (relative specifiers). */
  readonly mayImport: readonly string[];
  /** Packages the layer must not import at all. */
  readonly forbiddenPackages: readonly RegExp[];
}

const RULES: Readonly<Record<string, LayerRule>> = {
  // DESIGN.md: the domain imports neither the AWS SDK nor the CDK.
  core: { mayImport: ["core"], forbiddenPackages: [/^@aws-sdk\//, /^aws-cdk-lib(\/|$)/, /^constructs$/] },
  store: { mayImport: ["store", "core"], forbiddenPackages: [/^aws-cdk-lib(\/|$)/, /^constructs$/] },
  app: { mayImport: ["app", "store", "core"], forbiddenPackages: [/^aws-cdk-lib(\/|$)/, /^constructs$/] },
};

/** One import that breaks its layer's rule, as `file → specifier`. */
function layerViolations(file: string, source: string): string[] {
  const layer = relative(ROOT, file).split(sep)[0] ?? "";
  const rule = RULES[layer];
  if (!rule) return [];
  const { importedFiles } = ts.preProcessFile(source, true, true);
  const violations: string[] = [];
  for (const { fileName: specifier } of importedFiles) {
    if (specifier.startsWith(".")) {
      const target = relative(ROOT, resolve(dirname(file), specifier)).split(sep)[0] ?? "";
      if (!rule.mayImport.includes(target)) violations.push(`${relative(ROOT, file)} → ${specifier}`);
    } else if (rule.forbiddenPackages.some((p) => p.test(specifier))) {
      violations.push(`${relative(ROOT, file)} → ${specifier}`);
    }
  }
  return violations;
}

function sourceFiles(layer: string): string[] {
  return readdirSync(join(ROOT, layer), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && /\.(ts|tsx|mts|cts|js|mjs)$/.test(e.name))
    .map((e) => join(e.parentPath, e.name));
}

describe("layering: every import points down", () => {
  it.each(Object.keys(RULES))("no file in %s/ imports from a layer above it", (layer) => {
    // Prepare
    const files = sourceFiles(layer);

    // Act
    const violations = files.flatMap((f) => layerViolations(f, readFileSync(f, "utf8")));

    // Assess
    expect(files.length).toBeGreaterThan(0);
    expect(violations).toEqual([]);
  });

  // The check itself, on sources written to break it: a scanner that saw nothing would pass above.
  it.each([
    ["a named import", `import { config } from "../functions/config";`],
    ["a type-only import", `import type { Role } from "../functions/routes";`],
    ["a re-export", `export { config } from "../functions/config";`],
    ["a side-effect import", `import "../functions/observability";`],
    ["a dynamic import", `const m = await import("../functions/http");`],
    ["a require", `const m = require("../functions/http");`],
    ["a multi-line import", `import {\n  a,\n  b,\n} from "../functions/config";`],
  ])("finds %s of functions/ from app/", (_, source) => {
    expect(layerViolations(join(ROOT, "app/example.ts"), source)).toEqual([
      expect.stringMatching(/^app\/example\.ts → \.\.\/functions\//),
    ]);
  });

  it("finds store/ importing a use case and core/ importing the AWS SDK", () => {
    expect(
      layerViolations(join(ROOT, "store/example.ts"), `import { x } from "../app/runtime";`),
    ).toHaveLength(1);
    expect(
      layerViolations(
        join(ROOT, "core/example.ts"),
        `import { DynamoDBClient } from "@aws-sdk/client-dynamodb";`,
      ),
    ).toHaveLength(1);
  });

  it("ignores a path that only a comment mentions, and imports within the layer", () => {
    const source = `// see ../functions/config.ts\nimport { isTerminal } from "../core/job";\nimport { x } from "./runtime";`;
    expect(layerViolations(join(ROOT, "app/example.ts"), source)).toEqual([]);
  });
});
