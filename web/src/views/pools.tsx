import { useState } from "preact/hooks";
import type { Pool } from "../../../client/index";
import {
  ConfirmAction,
  ErrorNotice,
  Loading,
  type Outcome,
  OutcomeNotice,
  RefreshTools,
  ShareBar,
  useLoad,
  ViewFrame,
} from "../kit";
import {
  canDrain,
  formatAge,
  heartbeatAgeMs,
  LATE_HEARTBEAT_MS,
  loadLevel,
  nodeSummary,
  POOLS_REFRESH_MS,
  RESOURCES,
  type ResourceName,
  resourceLabel,
  share,
  statusText,
  usageText,
} from "./pools-model";
import type { ViewProps } from "./types";

type Capacity = Pool["capacity"];
type PoolNode = Pool["nodes"][number];

/**
 * The worker pools: each pool's capacity and use, and per node its use, status and heartbeat age.
 * GET /pools is polled every 5 s (the stream carries jobs, not nodes). Admins can drain a node that
 * is up: it takes no new work and leaves once its running attempts end.
 */
export function PoolsView(props: ViewProps) {
  const { client, admin } = props;
  const pools = useLoad(() => client.pools({ lost: true }), [client], POOLS_REFRESH_MS);
  const [outcome, setOutcome] = useState<Outcome | undefined>();

  const drain = async (pool: string, node: string) => {
    try {
      await client.drainNode(pool, node);
      setOutcome({ text: `Node ${node} of pool ${pool} is draining: it takes no new jobs.` });
      await pools.reload();
    } catch (error) {
      setOutcome({ text: `Could not drain node ${node}.`, error });
    }
  };

  return (
    <ViewFrame id="pools" title="Pools" tools={<RefreshTools loaded={pools} everyMs={POOLS_REFRESH_MS} />}>
      <OutcomeNotice outcome={outcome} />
      <ErrorNotice error={pools.error} title="Could not read the pools" />
      {pools.data === undefined ? (
        pools.loading ? (
          <Loading what="pools" />
        ) : null
      ) : pools.data.length === 0 ? (
        <p class="muted">No pools are configured.</p>
      ) : (
        pools.data.map((pool) => <PoolCard key={pool.name} pool={pool} admin={admin} onDrain={drain} />)
      )}
    </ViewFrame>
  );
}

function PoolCard(props: {
  readonly pool: Pool;
  readonly admin: boolean;
  readonly onDrain: (pool: string, node: string) => Promise<void>;
}) {
  const { pool, admin } = props;
  const now = new Date();
  const headingId = `pool-${pool.name}`;
  const labels = Object.entries(pool.labels);
  return (
    <article class="card" aria-labelledby={headingId}>
      <div class="card-head">
        <h2 id={headingId}>
          Pool <span class="av-mono">{pool.name}</span>
        </h2>
        <span class="muted">{nodeSummary(pool.nodes)}</span>
      </div>
      {labels.length === 0 ? null : (
        <p class="av-labels">
          <span class="visually-hidden">Labels:</span>
          {labels.map(([k, v]) => (
            <span key={k} class="badge badge-off av-mono">
              {k}={v}
            </span>
          ))}
        </p>
      )}
      <Usage
        capacity={pool.capacity}
        used={pool.used}
        caption={`Capacity of pool ${pool.name} (nodes that are up)`}
      />
      <div class="av-table-wrap">
        <table class="av-table av-stack">
          <caption>Nodes of pool {pool.name}</caption>
          <thead>
            <tr>
              <th scope="col">Node</th>
              <th scope="col">Status</th>
              {RESOURCES.map((r) => (
                <th scope="col" key={r}>
                  {resourceLabel(r)}
                </th>
              ))}
              <th scope="col">Heartbeat</th>
              {admin ? <th scope="col">Actions</th> : null}
            </tr>
          </thead>
          <tbody>
            {pool.nodes.length === 0 ? (
              <tr>
                <td colSpan={admin ? 7 : 6} class="muted">
                  No nodes have registered.
                </td>
              </tr>
            ) : (
              pool.nodes.map((node) => (
                <NodeRow
                  key={node.id}
                  pool={pool.name}
                  node={node}
                  now={now}
                  admin={admin}
                  onDrain={props.onDrain}
                />
              ))
            )}
          </tbody>
        </table>
      </div>
    </article>
  );
}

function NodeRow(props: {
  readonly pool: string;
  readonly node: PoolNode;
  readonly now: Date;
  readonly admin: boolean;
  readonly onDrain: (pool: string, node: string) => Promise<void>;
}) {
  const { node } = props;
  const age = heartbeatAgeMs(node.lastHeartbeatAt, props.now);
  const late = node.status === "up" && age !== null && age > LATE_HEARTBEAT_MS;
  return (
    <tr>
      <th scope="row" data-label="Node" class="av-mono">
        {node.id}
      </th>
      <td data-label="Status">
        <span class={`badge badge-${node.status}`}>{statusText(node.status)}</span>
      </td>
      {RESOURCES.map((r) => (
        <td key={r} data-label={resourceLabel(r)}>
          <UsageCell resource={r} used={node.used[r]} capacity={node.capacity[r]} />
        </td>
      ))}
      <td data-label="Heartbeat">
        <time dateTime={node.lastHeartbeatAt} title={node.lastHeartbeatAt}>
          {formatAge(age)}
        </time>
        {late ? (
          <>
            {" "}
            <span class="badge badge-late">late</span>
          </>
        ) : null}
      </td>
      {props.admin ? (
        <td data-label="Actions">
          {canDrain(node.status) ? (
            <ConfirmAction
              label="Drain"
              ariaLabel={`Drain node ${node.id}`}
              question={`Drain ${node.id}? It takes no new jobs; running ones finish.`}
              confirmLabel="Drain node"
              onConfirm={() => props.onDrain(props.pool, node.id)}
            />
          ) : (
            <span class="muted">—</span>
          )}
        </td>
      ) : null}
    </tr>
  );
}

function Usage(props: { readonly capacity: Capacity; readonly used: Capacity; readonly caption: string }) {
  return (
    <dl class="av-figures av-pool-usage" aria-label={props.caption}>
      {RESOURCES.map((r) => (
        <div class="av-figure" key={r}>
          <dt>{resourceLabel(r)}</dt>
          <dd>
            <UsageCell resource={r} used={props.used[r]} capacity={props.capacity[r]} />
          </dd>
        </div>
      ))}
    </dl>
  );
}

function UsageCell(props: {
  readonly resource: ResourceName;
  readonly used: number;
  readonly capacity: number;
}) {
  const s = share(props.used, props.capacity);
  return (
    <span class="av-usage">
      <span>{usageText(props.resource, props.used, props.capacity)}</span>
      {s === null ? null : <ShareBar share={s} level={loadLevel(s)} />}
    </span>
  );
}
