import { ForbiddenError, InvalidTransitionError, NotFoundError } from "../core/errors";
import type { Principal } from "../core/principal";
import type { NodeCapacity } from "../store/capacity";
import { createDocumentClient } from "../store/dynamo";
import { type NodeItem, NodeRepository, type NodeStatus } from "../store/nodes";
import { config } from "./config";
import type { AppContext } from "./runtime";

/**
 * GET /pools: every configured pool with its capacity and what is reserved of it, and its nodes
 * as they registered. `capacity` and `used` add up the nodes that are `up` — those admission
 * places jobs on — so used/capacity is the pool's utilization; draining and lost nodes are
 * listed with their own figures. Lost nodes stay in the table for up to an hour before the
 * reconciler prunes them, so GET /pools leaves them out unless asked (`?lost=true`).
 */

export type PoolsContext = Pick<AppContext, "pools"> & {
  readonly nodes: NodeRepository;
  /** The Policy table, where an admin's drain is recorded (store/audit.ts); unset: not recorded. */
  readonly auditTable?: string;
};

let cached: PoolsContext | undefined;

/** The configured pools and the Nodes table, from the process configuration, created once. */
export function poolsContext(): PoolsContext {
  if (!cached) {
    const c = config();
    cached = {
      pools: c.pools,
      nodes: new NodeRepository(
        createDocumentClient({ region: c.region, endpoint: c.dynamoEndpoint }),
        c.nodesTable,
      ),
      auditTable: c.policyTable,
    };
  }
  return cached;
}

export interface NodeView {
  readonly id: string;
  readonly capacity: NodeCapacity;
  readonly used: NodeCapacity;
  readonly status: NodeStatus;
  readonly lastHeartbeatAt: string;
  /** The admin who drained it (POST /pools/{pool}/nodes/{id}/drain); null otherwise. */
  readonly drainedBy: string | null;
  readonly drainedAt: string | null;
}

export interface PoolView {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly capacity: NodeCapacity;
  readonly used: NodeCapacity;
  readonly nodes: NodeView[];
}

export interface ListPoolsOptions {
  /**
   * Whether the nodes list shows nodes that are `lost`; capacity and used count only `up` nodes
   * either way.
   * @default true
   */
  readonly lost?: boolean;
}

export async function listPools(ctx: PoolsContext, options: ListPoolsOptions = {}): Promise<PoolView[]> {
  const showLost = options.lost ?? true;
  return Promise.all(
    ctx.pools.map(async (pool) => {
      const nodes = (await ctx.nodes.listNodes(pool.name))
        .filter((n) => showLost || n.status !== "lost")
        .sort(byRegistration);
      const up = nodes.filter((n) => n.status === "up");
      return {
        name: pool.name,
        labels: pool.labels,
        capacity: sum(up.map((n) => n.capacity)),
        used: sum(up.map((n) => n.used)),
        nodes: nodes.map(nodeView),
      };
    }),
  );
}

/** Wider than any id a worker registers, narrower than anything DynamoDB would refuse. */
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface DrainAnswer {
  /** 202 when this call started the drain, 200 when the node was already draining. */
  readonly started: boolean;
  readonly node: NodeView;
}

/**
 * POST /pools/{pool}/nodes/{id}/drain (admin): the node takes no new work, finishes what it
 * runs, then leaves. The write only flips the node to `draining`; admission already skips such
 * nodes (core/admission.ts, and the capacity reservation's own `status = up` condition covers a
 * pass that read the node just before), and the worker notices on its next node heartbeat and
 * stops as on SIGTERM (worker/runtime.ts). Jobs booked on the node but not started are taken by
 * the pool's other nodes, as a lost node's are (app/attempts.ts moves the booking).
 */
export async function drainNode(
  ctx: PoolsContext & Pick<AppContext, "clock">,
  principal: Principal,
  pool: string,
  nodeId: string,
): Promise<DrainAnswer> {
  if (!principal.admin) throw new ForbiddenError("only an admin may drain a node");
  if (!ctx.pools.some((p) => p.name === pool)) throw new NotFoundError(`no pool named ${pool}`);
  // No node could have another id (worker/config.ts: a 1..64-character name, `-`, 12 hex digits),
  // and one past DynamoDB's key size would be a ValidationException, not an answer.
  if (!NODE_ID.test(nodeId)) throw new NotFoundError(`no node ${nodeId.slice(0, 80)} in pool ${pool}`);
  const outcome = await ctx.nodes.drain(pool, nodeId, principal.id, ctx.clock(), ctx.auditTable);
  switch (outcome.kind) {
    case "absent":
      throw new NotFoundError(`no node ${nodeId} in pool ${pool}`);
    case "lost":
      throw new InvalidTransitionError(
        "lost",
        "draining",
        `node ${nodeId} is lost (no heartbeat since ${outcome.node.lastHeartbeatAt}): its worker is gone, there is nothing to drain`,
      );
    case "drained":
      return { started: true, node: nodeView(outcome.node) };
    case "already_draining":
      return { started: false, node: nodeView(outcome.node) };
  }
}

function nodeView(n: NodeItem): NodeView {
  return {
    id: n.nodeId,
    capacity: copy(n.capacity),
    used: copy(n.used),
    status: n.status,
    lastHeartbeatAt: n.lastHeartbeatAt,
    drainedBy: n.drainedBy ?? null,
    drainedAt: n.drainedAt ?? null,
  };
}

function byRegistration(a: NodeItem, b: NodeItem): number {
  return a.registeredAt.localeCompare(b.registeredAt) || a.nodeId.localeCompare(b.nodeId);
}

/** Sums in thousandths (the finest CPU a job can ask for), so 0.1 + 0.2 reads 0.3. */
function sum(parts: readonly NodeCapacity[]): NodeCapacity {
  const milli = (pick: (c: NodeCapacity) => number) =>
    parts.reduce((total, c) => total + Math.round(pick(c) * 1000), 0) / 1000;
  return { cpu: milli((c) => c.cpu), memoryMb: milli((c) => c.memoryMb), gpu: milli((c) => c.gpu) };
}

function copy(c: NodeCapacity): NodeCapacity {
  return { cpu: c.cpu, memoryMb: c.memoryMb, gpu: c.gpu };
}
