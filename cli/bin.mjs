#!/usr/bin/env node
// The `jobq` bin. tsx is loaded from this package's own node_modules (not resolved from the
// working directory, as a `npx tsx` shebang would be), so the installed command works anywhere.
import { register } from "tsx/esm/api";

register();
await import("./main.ts");
