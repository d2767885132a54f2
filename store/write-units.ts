import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import type { IndexDefinition, TableDefinition } from "./tables";

/**
 * Write units of one item's write by DynamoDB's billing rules, from the item as it was before and
 * after: what the benchmark counts for a TransactWriteItems, because DynamoDB Local reports a
 * transaction of many items as if it wrote one (10 small puts: 2 units, where DynamoDB bills 20).
 *
 * - The item: 1 unit per started KB of the larger of its two images (a put over nothing: the new
 *   item; a delete: the old one; a condition check: the item as it is).
 * - Each global secondary index: an entry added or removed is one write, an entry whose key
 *   changed is two (a delete and a put), an entry whose projected attributes changed is one; 1 unit
 *   per started KB of the entry. An index the item is in neither before nor after costs nothing.
 * - In a transaction, everything twice (what DynamoDB Local reports for a one-item transaction,
 *   indexes included).
 */
export type Item = Readonly<Record<string, AttributeValue>>;

const KB = 1024;

/** DynamoDB's item size: each attribute's name plus its value, as documented for billing. */
export function itemSize(item: Item | undefined): number {
  if (!item) return 0;
  let size = 0;
  for (const [name, value] of Object.entries(item)) size += Buffer.byteLength(name) + valueSize(value);
  return size;
}

function valueSize(value: AttributeValue): number {
  if (value.S !== undefined) return Buffer.byteLength(value.S);
  if (value.N !== undefined) return numberSize(value.N);
  if (value.B !== undefined) return value.B.byteLength;
  if (value.BOOL !== undefined || value.NULL !== undefined) return 1;
  if (value.SS !== undefined) return value.SS.reduce((s, v) => s + Buffer.byteLength(v), 0);
  if (value.NS !== undefined) return value.NS.reduce((s, v) => s + numberSize(v), 0);
  if (value.BS !== undefined) return value.BS.reduce((s, v) => s + v.byteLength, 0);
  // Lists and maps: 3 bytes, and 1 more per element, besides the elements themselves.
  if (value.L !== undefined) return 3 + value.L.reduce((s, v) => s + 1 + valueSize(v), 0);
  if (value.M !== undefined) return 3 + itemSize(value.M) + Object.keys(value.M).length;
  return 0;
}

/** About one byte per two significant digits, plus one. */
function numberSize(text: string): number {
  const digits = text.replace(/^-/, "").replace(".", "").replace(/^0+/, "").replace(/0+$/, "");
  return Math.ceil(Math.max(digits.length, 1) / 2) + 1;
}

/** The index's entry for this item, or undefined when the item lacks the index's key. */
function indexEntry(
  table: TableDefinition,
  index: IndexDefinition,
  item: Item | undefined,
): Item | undefined {
  if (!item) return undefined;
  const keyNames = [index.partitionKey.name, index.sortKey?.name].filter((n): n is string => n !== undefined);
  if (keyNames.some((name) => item[name] === undefined)) return undefined;
  const names = new Set([
    ...keyNames,
    table.partitionKey.name,
    ...(table.sortKey ? [table.sortKey.name] : []),
  ]);
  if (index.projection.type === "ALL") return item;
  if (index.projection.type === "INCLUDE")
    for (const name of index.projection.nonKeyAttributes) names.add(name);
  const entry: Record<string, AttributeValue> = {};
  for (const name of names) {
    const value = item[name];
    if (value !== undefined) entry[name] = value;
  }
  return entry;
}

function sameValue(a: AttributeValue | undefined, b: AttributeValue | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function sameEntry(a: Item, b: Item): boolean {
  const names = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const name of names) if (!sameValue(a[name], b[name])) return false;
  return true;
}

function units(item: Item): number {
  return Math.max(1, Math.ceil(itemSize(item) / KB));
}

/** Write units of the item's write: see the module's comment. */
export function writeUnits(
  table: TableDefinition,
  before: Item | undefined,
  after: Item | undefined,
  transactional: boolean,
): number {
  let total = Math.max(1, Math.ceil(Math.max(itemSize(before), itemSize(after)) / KB));
  for (const index of table.globalSecondaryIndexes) {
    const old = indexEntry(table, index, before);
    const next = indexEntry(table, index, after);
    if (!old && !next) continue;
    if (!old || !next) {
      total += units((old ?? next) as Item);
      continue;
    }
    const keyNames = [index.partitionKey.name, index.sortKey?.name].filter(
      (n): n is string => n !== undefined,
    );
    if (keyNames.some((name) => !sameValue(old[name], next[name]))) {
      total += units(old) + units(next);
    } else if (!sameEntry(old, next)) {
      total += units(next);
    }
  }
  return transactional ? 2 * total : total;
}

/** An UpdateItem's expression parts, as a request carries them (values in document form, marshalled). */
export interface UpdateParts {
  readonly UpdateExpression?: string;
  readonly ExpressionAttributeNames?: Readonly<Record<string, string>>;
  readonly ExpressionAttributeValues?: Readonly<Record<string, AttributeValue>>;
}

const SET_CLAUSE = /^(#?[A-Za-z0-9_]+)\s*=\s*(:[A-Za-z0-9_]+)$/;
const NAME = /^#?[A-Za-z0-9_]+$/;

/**
 * The item an update leaves, from the item before it, for updates of the plain form jobq's status
 * changes use (`SET #a = :a, … REMOVE #b, …`); null for any other expression (a sum, ADD, a nested
 * path), whose result only a read can tell. Worked out rather than read back, because by the time
 * a read came the item may have changed again (a no-op job is running, or done, milliseconds after
 * its admission).
 */
export function appliedUpdate(before: Item | undefined, update: UpdateParts): Item | null {
  const expression = update.UpdateExpression?.trim();
  if (!expression) return null;
  const match = /^SET\s+(.+?)(?:\s+REMOVE\s+(.+))?$/s.exec(expression);
  if (!match?.[1]) return null;
  const name = (token: string): string | null =>
    token.startsWith("#") ? (update.ExpressionAttributeNames?.[token] ?? null) : token;
  const after: Record<string, AttributeValue> = { ...before };
  for (const clause of match[1].split(",").map((c) => c.trim())) {
    const set = SET_CLAUSE.exec(clause);
    const attribute = set?.[1] ? name(set[1]) : null;
    const value = set?.[2] ? update.ExpressionAttributeValues?.[set[2]] : undefined;
    if (!attribute || !value) return null;
    after[attribute] = value;
  }
  for (const token of (match[2] ?? "")
    .split(",")
    .map((c) => c.trim())
    .filter(Boolean)) {
    const attribute = NAME.test(token) ? name(token) : null;
    if (!attribute) return null;
    delete after[attribute];
  }
  return after;
}
