import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { auditRecord } from "../core/audit";
import { sendAtMostOnce } from "./at-most-once";
import { writeAudited } from "./audit";
import { type NodeCapacity, releaseCapacityItem, reserveCapacityItem } from "./capacity";
import type { Reservation } from "./job-items";
import { LEASE_SK, NODE_PREFIX, nodeSk } from "./keys";

/**
 * The Nodes table (store/tables.ts `nodesTable`): one partition per pool holding its worker nodes
 * (`NODE#<nodeId>`) and the pool's scheduling lease (`LEASE`). Capacity moves on node items
 * through store/capacity.ts: inside the job's own transaction, or in a write of its own ordered
 * around the job's (the scheduler's booking before its admissions, a completion's release after
 * it, each never sent twice); this module registers nodes, keeps their heartbeat and status, and
 * serializes scheduling passes per pool.
 */

export type NodeStatus = "up" | "draining" | "lost";

/** A node as docs/lifecycle.md defines it. */
export interface NodeItem {
  readonly pool: string;
  readonly sk: string;
  readonly nodeId: string;
  readonly workerId: string;
  readonly capacity: NodeCapacity;
  readonly used: NodeCapacity;
  readonly status: NodeStatus;
  readonly registeredAt: string;
  readonly lastHeartbeatAt: string;
  /** When markLostNodes found it silent. */
  readonly lostAt?: string;
  /** Who drained it through POST /pools/{pool}/nodes/{id}/drain (absent: its worker did, or nobody). */
  readonly drainedBy?: string;
  readonly drainedAt?: string;
  /**
   * How many times the reconciler set `used` to what the `active` index holds (absent: never).
   * A release written apart from its job's change is conditional on it (store/capacity.ts
   * releaseCapacityItem), so a repair that came in between is never released over.
   */
  readonly repairs?: number;
  /**
   * When a pass last booked admissions here ahead of their jobs' writes (`book`). The
   * reconciler's proof leaves an excess on the node alone for a while after it: those writes
   * may still be landing.
   */
  readonly bookedAt?: string;
}

/** What a pass's booking of its admissions on a node came to (`NodeRepository#book`). */
export type Booking =
  /** Booked; a refund of what is not admitted after all is conditional on this repair count. */
  | { readonly outcome: "booked"; readonly repairs: number }
  /** Nothing written: the sum no longer fits, or the node is not up (or gone). */
  | { readonly outcome: "refused" }
  /** The answer was lost: it may have landed. Not sent again; the reconciler's proof settles it. */
  | { readonly outcome: "unknown" };

/** What an admin's drain found: the node as it now is, and whether this call changed it. */
export type DrainOutcome =
  | { readonly kind: "drained"; readonly node: NodeItem }
  | { readonly kind: "already_draining"; readonly node: NodeItem }
  | { readonly kind: "lost"; readonly node: NodeItem }
  | { readonly kind: "absent" };

export interface NodeRegistration {
  readonly pool: string;
  /**
   * Fresh for every worker process start and every re-registration after the node was marked
   * lost: capacity of the old id is still reserved by attempts that have not ended yet, and
   * those release it on the old item. Reusing an id would reset `used` under them.
   */
  readonly nodeId: string;
  readonly workerId: string;
  readonly capacity: NodeCapacity;
}

/** A pool's scheduling lease: who runs the pool's pass now, and whether news arrived meanwhile. */
export interface LeaseItem {
  readonly pool: string;
  readonly sk: string;
  /** Absent while nobody holds it. */
  readonly holder?: string;
  readonly expiresAt?: string;
  readonly acquiredAt?: string;
  readonly dirty?: boolean;
  /** round-robin: the owner whose job was admitted last; the next pass's turns start after it. */
  readonly lastOwner?: string;
  /**
   * fair-share, round-robin: owners the last pass found queued jobs of, where the next pass
   * starts its owner-by-owner read (app/queue-reader.ts leaseOwnerHints); only a hint.
   */
  readonly queueOwners?: string[];
}

/** A node id is already registered by another worker (ids must be fresh per registration). */
export class NodeConflictError extends Error {
  constructor(
    readonly pool: string,
    readonly nodeId: string,
  ) {
    super(`node ${nodeId} of pool ${pool} is already registered by another worker`);
    this.name = "NodeConflictError";
  }
}

const ZERO: NodeCapacity = { cpu: 0, memoryMb: 0, gpu: 0 };

export class NodeRepository {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    readonly tableName: string,
  ) {}

  /**
   * Adds a node with nothing used. Retrying the same registration (same worker) is a no-op that
   * returns the stored node; the same id from another worker is a NodeConflictError.
   */
  async register(node: NodeRegistration, now: Date): Promise<NodeItem> {
    const at = now.toISOString();
    const item: NodeItem = {
      pool: node.pool,
      sk: nodeSk(node.nodeId),
      nodeId: node.nodeId,
      workerId: node.workerId,
      capacity: { cpu: node.capacity.cpu, memoryMb: node.capacity.memoryMb, gpu: node.capacity.gpu },
      used: ZERO,
      status: "up",
      registeredAt: at,
      lastHeartbeatAt: at,
    };
    const written = await this.conditionally(() =>
      this.db.send(
        new PutCommand({
          TableName: this.tableName,
          Item: item,
          ConditionExpression: "attribute_not_exists(sk)",
        }),
      ),
    );
    if (written) return item;
    const existing = await this.getNode(node.pool, node.nodeId);
    if (existing && existing.workerId === node.workerId) return existing;
    throw new NodeConflictError(node.pool, node.nodeId);
  }

  async getNode(pool: string, nodeId: string): Promise<NodeItem | null> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: { pool, sk: nodeSk(nodeId) }, ConsistentRead: true }),
    );
    return (out.Item as NodeItem | undefined) ?? null;
  }

  /**
   * Records that the node is alive. False when it no longer may be (marked lost, or gone): the
   * worker then registers again under a fresh node id.
   */
  async heartbeat(pool: string, nodeId: string, now: Date): Promise<boolean> {
    return (await this.beat(pool, nodeId, now)) !== null;
  }

  /**
   * heartbeat() that also answers the node as stored after the write, or null when it may no
   * longer beat. The worker learns from it that an admin drained its node: ReturnValues costs no
   * extra read capacity, so noticing a drain adds no request to the beat the worker sends anyway.
   */
  async beat(pool: string, nodeId: string, now: Date): Promise<NodeItem | null> {
    try {
      const out = await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pool, sk: nodeSk(nodeId) },
          UpdateExpression: "SET lastHeartbeatAt = :now",
          ConditionExpression: "attribute_exists(sk) AND #status <> :lost",
          ExpressionAttributeNames: { "#status": "status" },
          ExpressionAttributeValues: { ":now": now.toISOString(), ":lost": "lost" },
          ReturnValues: "ALL_NEW",
        }),
      );
      return (out.Attributes as NodeItem | undefined) ?? null;
    } catch (error) {
      if (isConditionFailure(error)) return null;
      throw error;
    }
  }

  /**
   * An admin's drain: an `up` node becomes `draining`, with who asked and when, in one
   * conditional write. A node already draining is left as it is (a repeated drain, or a worker
   * already stopping on SIGTERM keeps its own story); a lost one cannot drain, its worker is gone.
   */
  async drain(
    pool: string,
    nodeId: string,
    by: string,
    now: Date,
    auditTable?: string,
  ): Promise<DrainOutcome> {
    const update = {
      TableName: this.tableName,
      Key: { pool, sk: nodeSk(nodeId) },
      UpdateExpression: "SET #status = :draining, drainedBy = :by, drainedAt = :now",
      ConditionExpression: "attribute_exists(sk) AND #status = :up",
      ExpressionAttributeNames: { "#status": "status" },
      ExpressionAttributeValues: {
        ":draining": "draining",
        ":up": "up",
        ":by": by,
        ":now": now.toISOString(),
      },
    };
    try {
      if (auditTable !== undefined) {
        // The drain and its audit record in one transaction (no ReturnValues there: read after).
        const at = now.toISOString();
        await writeAudited(
          this.db,
          { Update: update },
          {
            tableName: auditTable,
            record: auditRecord({
              at,
              principal: by,
              kind: "node",
              subject: `${pool}/${nodeId}`,
              action: "drain",
              before: { status: "up" },
              after: { status: "draining", drainedBy: by, drainedAt: at },
            }),
          },
        );
        const node = await this.getNode(pool, nodeId);
        if (node) return { kind: "drained", node };
        return { kind: "absent" };
      }
      const out = await this.db.send(new UpdateCommand({ ...update, ReturnValues: "ALL_NEW" }));
      return { kind: "drained", node: out.Attributes as NodeItem };
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      // Only a refused drain reads: the item as it is now says why.
      const old = await this.getNode(pool, nodeId);
      if (!old) return { kind: "absent" };
      return { kind: old.status === "lost" ? "lost" : "already_draining", node: old };
    }
  }

  /**
   * Moves a node to `status`: `draining` on SIGTERM (no new admissions, running attempts
   * finish), back to `up`, or `lost`. A lost node stays lost: its worker re-registers under a
   * new id. False when the node is absent or lost.
   */
  async setStatus(pool: string, nodeId: string, status: NodeStatus): Promise<boolean> {
    return this.conditionally(() =>
      this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pool, sk: nodeSk(nodeId) },
          UpdateExpression: "SET #status = :to",
          ConditionExpression: "attribute_exists(sk) AND #status <> :lost",
          ExpressionAttributeNames: { "#status": "status" },
          ExpressionAttributeValues: { ":to": status, ":lost": "lost" },
        }),
      ),
    );
  }

  /**
   * Removes a node whose reservations have all been released. A node that still holds some
   * stays (as draining, unless already lost): deleting it would make every transaction that
   * releases its capacity fail. Returns whether the node is gone.
   */
  async deregister(pool: string, nodeId: string): Promise<boolean> {
    const deleted = await this.conditionally(() =>
      this.db.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: { pool, sk: nodeSk(nodeId) },
          ConditionExpression:
            "attribute_not_exists(sk) OR (used.cpu = :zero AND used.memoryMb = :zero AND used.gpu = :zero)",
          ExpressionAttributeValues: { ":zero": 0 },
        }),
      ),
    );
    if (!deleted) await this.setStatus(pool, nodeId, "draining");
    return deleted;
  }

  /** Every node of a pool, whatever its status, strongly consistent. */
  async listNodes(pool: string): Promise<NodeItem[]> {
    const nodes: NodeItem[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await this.db.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: "#pool = :pool AND begins_with(sk, :prefix)",
          // `pool` is one of DynamoDB's reserved words.
          ExpressionAttributeNames: { "#pool": "pool" },
          ExpressionAttributeValues: { ":pool": pool, ":prefix": NODE_PREFIX },
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        }),
      );
      for (const item of out.Items ?? []) nodes.push(item as NodeItem);
      startKey = out.LastEvaluatedKey;
    } while (startKey);
    return nodes;
  }

  /**
   * Marks every node that has not heartbeated for `lostAfterSeconds` as lost, each with its own
   * conditional write (a heartbeat that lands first wins). Returns the nodes it marked.
   */
  async markLostNodes(pool: string, now: Date, lostAfterSeconds: number): Promise<NodeItem[]> {
    const cutoff = new Date(now.getTime() - lostAfterSeconds * 1000).toISOString();
    const marked: NodeItem[] = [];
    for (const node of await this.listNodes(pool)) {
      if (node.status === "lost" || node.lastHeartbeatAt >= cutoff) continue;
      const done = await this.conditionally(() =>
        this.db.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: { pool, sk: node.sk },
            UpdateExpression: "SET #status = :lost, lostAt = :now",
            ConditionExpression: "#status IN (:up, :draining) AND lastHeartbeatAt < :cutoff",
            ExpressionAttributeNames: { "#status": "status" },
            ExpressionAttributeValues: {
              ":lost": "lost",
              ":up": "up",
              ":draining": "draining",
              ":cutoff": cutoff,
              ":now": now.toISOString(),
            },
          }),
        ),
      );
      if (done) marked.push({ ...node, status: "lost" });
    }
    return marked;
  }

  /**
   * The node's repair count (0 when never repaired), read before a job's change that releases its
   * reservation apart from that change (app/completion.ts): eventually consistent, since a stale
   * count only refuses the release (the next proof repairs it), never lets one through. Null when
   * the node is gone.
   */
  async repairsOf(pool: string, nodeId: string): Promise<number | null> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pool, sk: nodeSk(nodeId) },
        ProjectionExpression: "sk, repairs",
      }),
    );
    if (!out.Item) return null;
    return typeof out.Item.repairs === "number" ? out.Item.repairs : 0;
  }

  /**
   * A completed job's reservation back to its node, written apart from the job's change
   * (app/completion.ts): conditional on the node's repair count as read before that change
   * (store/capacity.ts releaseCapacityItem), and sent at most once. A release is a subtraction, so
   * a retry of one whose answer was lost could give the capacity back twice, and the node would
   * take more than it has; the SDK's retry is let through only after an answer that says nothing
   * was written (throttling), and after any other failure the outcome is `unknown`: the release
   * may or may not have landed, and the reconciler's next proof settles what is left. `refused`:
   * the node was repaired since the count was read, or is gone.
   */
  async releaseOnce(
    reservation: Reservation,
    repairsSeen: number,
  ): Promise<"released" | "refused" | "unknown"> {
    const update = releaseCapacityItem(this.tableName, reservation, repairsSeen).Update;
    if (!update) throw new Error("releaseCapacityItem builds an Update");
    const command = new UpdateCommand(update);
    // Unnamed: the document client copies a command's middleware onto the low-level command it
    // sends, so it may sit there twice; each copy keeps the rule, whichever sees a failure first.
    command.middlewareStack.add(sendAtMostOnce(), { step: "finalizeRequest", priority: "low" });
    try {
      await this.db.send(command);
      return "released";
    } catch (error) {
      if (isConditionFailure(error)) return "refused";
      return "unknown";
    }
  }

  /**
   * Books what a pass admits onto a node before the jobs' own writes (app/admissions.ts, admitApart): `used`
   * up by the sum if it still fits and the node is up, one conditional UpdateItem, and
   * `bookedAt` stamped. So a job is never dispatched on capacity its node does not count: a pass
   * that dies between the two leaves capacity booked for nobody, which the reconciler's proof
   * gives back, never a node that takes more than it has. Sent at most once, as a release is: an
   * addition retried after a lost answer would book twice.
   */
  async book(reservation: Reservation, capacity: NodeCapacity, at: Date): Promise<Booking> {
    const reserve = reserveCapacityItem(this.tableName, reservation, capacity).Update;
    if (!reserve) throw new Error("reserveCapacityItem builds an Update");
    const command = new UpdateCommand({
      ...reserve,
      UpdateExpression: `${reserve.UpdateExpression}, bookedAt = :at`,
      ExpressionAttributeValues: { ...reserve.ExpressionAttributeValues, ":at": at.toISOString() },
      // The repair count as this write left it, which a refund is conditional on; not billed as a read.
      ReturnValues: "ALL_NEW",
    });
    command.middlewareStack.add(sendAtMostOnce(), { step: "finalizeRequest", priority: "low" });
    try {
      const out = await this.db.send(command);
      const repairs = out.Attributes?.repairs;
      return { outcome: "booked", repairs: typeof repairs === "number" ? repairs : 0 };
    } catch (error) {
      if (isConditionFailure(error)) return { outcome: "refused" };
      return { outcome: "unknown" };
    }
  }

  /**
   * Sets a node's `used` to what its reservations add up to, only if `used` is still what the
   * caller read (the reconciler's repair of a leak), and counts the repair (`repairs`): a release
   * that read the count before this write is refused. False when `used` changed meanwhile, or
   * when the repair would lower `used` on a node a pass booked at `bookedSince` or later: that
   * pass's admissions may not all be written yet, and a repair would count them out of capacity
   * they are about to hold. Without `bookedSince`, bookings are not looked at.
   */
  async repairUsed(
    pool: string,
    nodeId: string,
    read: NodeCapacity,
    actual: NodeCapacity,
    bookedSince?: Date,
  ): Promise<boolean> {
    const lowers =
      bookedSince !== undefined &&
      (actual.cpu < read.cpu || actual.memoryMb < read.memoryMb || actual.gpu < read.gpu);
    return this.conditionally(() =>
      this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pool, sk: nodeSk(nodeId) },
          UpdateExpression: "SET used = :actual ADD repairs :one",
          ConditionExpression: `attribute_exists(sk) AND used.cpu = :cpu AND used.memoryMb = :mem AND used.gpu = :gpu${
            lowers ? " AND (attribute_not_exists(bookedAt) OR bookedAt < :since)" : ""
          }`,
          ExpressionAttributeValues: {
            ":actual": { cpu: actual.cpu, memoryMb: actual.memoryMb, gpu: actual.gpu },
            ":one": 1,
            ":cpu": read.cpu,
            ":mem": read.memoryMb,
            ":gpu": read.gpu,
            ...(lowers ? { ":since": bookedSince.toISOString() } : {}),
          },
        }),
      ),
    );
  }

  async getLease(pool: string): Promise<LeaseItem | null> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: { pool, sk: LEASE_SK }, ConsistentRead: true }),
    );
    return (out.Item as LeaseItem | undefined) ?? null;
  }

  /**
   * Takes the pool's scheduling lease for `holder` if nobody holds it or the holder's lease
   * expired (a crashed pass), and answers it as taken; null when another holds it. Taking it
   * clears `dirty`: the pass about to run reads everything fresh, so wake-ups from before it
   * need no rerun.
   */
  async acquireLease(pool: string, holder: string, now: Date, ttlSeconds: number): Promise<LeaseItem | null> {
    const at = now.toISOString();
    try {
      const out = await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pool, sk: LEASE_SK },
          UpdateExpression: "SET holder = :holder, expiresAt = :expiresAt, acquiredAt = :now, dirty = :false",
          ConditionExpression: "attribute_not_exists(holder) OR expiresAt < :now OR holder = :holder",
          ExpressionAttributeValues: {
            ":holder": holder,
            ":expiresAt": new Date(now.getTime() + ttlSeconds * 1000).toISOString(),
            ":now": at,
            ":false": false,
          },
          // The lease as taken, lastOwner included: the pass needs no read of it.
          ReturnValues: "ALL_NEW",
        }),
      );
      return out.Attributes as LeaseItem;
    } catch (error) {
      if (isConditionFailure(error)) return null;
      throw error;
    }
  }

  /**
   * Tells the current holder that something changed during its pass, so it runs again before
   * letting go. False when nobody holds the lease any more: the caller should take it itself.
   */
  async markDirty(pool: string, now: Date): Promise<boolean> {
    return this.conditionally(() =>
      this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pool, sk: LEASE_SK },
          UpdateExpression: "SET dirty = :true",
          ConditionExpression: "attribute_exists(holder) AND expiresAt >= :now",
          ExpressionAttributeValues: { ":true": true, ":now": now.toISOString() },
        }),
      ),
    );
  }

  /**
   * Lets go of the lease, leaving round-robin's `lastOwner` when the pass moved it on and the
   * owners it found queued jobs of when they changed (`queueOwners`). `dirty` says a wake-up
   * arrived during the pass: the caller runs again (taking the lease anew) so that nothing waits
   * for the next sweep. A lease that expired and was taken by another pass is not touched (that
   * pass will see everything, and keeps its own turns).
   */
  async releaseLease(
    pool: string,
    holder: string,
    leave: { readonly lastOwner?: string | null; readonly queueOwners?: readonly string[] | null } = {},
  ): Promise<{ dirty: boolean }> {
    const { lastOwner = null, queueOwners = null } = leave;
    try {
      const out = await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pool, sk: LEASE_SK },
          UpdateExpression: [
            "REMOVE holder, expiresAt SET dirty = :false",
            lastOwner === null ? "" : ", lastOwner = :owner",
            queueOwners === null ? "" : ", queueOwners = :owners",
          ].join(""),
          ConditionExpression: "holder = :holder",
          ExpressionAttributeValues: {
            ":holder": holder,
            ":false": false,
            ...(lastOwner === null ? {} : { ":owner": lastOwner }),
            ...(queueOwners === null ? {} : { ":owners": queueOwners }),
          },
          ReturnValues: "ALL_OLD",
        }),
      );
      return { dirty: out.Attributes?.dirty === true };
    } catch (error) {
      if (isConditionFailure(error)) return { dirty: false };
      throw error;
    }
  }

  /**
   * Extends the holder's lease; false when it is no longer the holder (it expired and another
   * pass took it). A long pass renews while it runs, so the lease itself can stay short.
   */
  async renewLease(pool: string, holder: string, now: Date, ttlSeconds: number): Promise<boolean> {
    return this.conditionally(() =>
      this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pool, sk: LEASE_SK },
          UpdateExpression: "SET expiresAt = :expiresAt",
          ConditionExpression: "holder = :holder",
          ExpressionAttributeValues: {
            ":holder": holder,
            ":expiresAt": new Date(now.getTime() + ttlSeconds * 1000).toISOString(),
          },
        }),
      ),
    );
  }

  /**
   * Drops whoever holds the pool's lease, whatever its expiry. Only for a process that knows the
   * holder is gone: the local stack at start, whose previous process (killed) held it.
   */
  async breakLease(pool: string): Promise<void> {
    await this.db.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pool, sk: LEASE_SK },
        UpdateExpression: "REMOVE holder, expiresAt",
      }),
    );
  }

  private async conditionally(write: () => Promise<unknown>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }
}

function isConditionFailure(error: unknown): boolean {
  return error instanceof Error && error.name === "ConditionalCheckFailedException";
}
