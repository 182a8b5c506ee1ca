// Building a stress run from what the index knows: every live node; the server adds each
// node's pool debt (principal, tenor, rate, share staked), utilization and ask.
import { postJSON } from "./api.js";
import { loadNodes, loadPools } from "./data.js";

const PPM = 1_000_000;
export const MAX_PATH_NODES = 300;

// Only `className`'s rental prices fall, `declineBps` a year compounding monthly (what
// backend/risk/scenarios.py class_decline builds): everything else as today.
export function classShock(className, declineBps, horizon) {
  const keep = 1 - declineBps / 10_000;
  const path = Array.from({ length: horizon }, (_, i) => Math.round(PPM * keep ** ((i + 1) / 12)));
  const pct = +(declineBps / 100).toFixed(2);
  return {
    name: `${className}-${pct}pct-yr`,
    description: `${className} rental prices fall ${pct}% a year; everything else as today.`,
    price_index_ppm: { [className]: path },
  };
}

// The indexed fleet, pools by node id, and the request body's node_ids. The server fills
// in each node's pool loan (where its schedule stands today, or from its draw with
// `fromDraw`), trailing attested utilization and ask from its index.
export async function indexedFleet({ fromDraw = false } = {}) {
  const [nodes, pools] = await Promise.all([loadNodes(), loadPools()]);
  const live = nodes.filter((n) => n.status !== "exited");
  const liveIds = new Set(live.map((n) => n.node_id));
  const poolByNode = new Map();
  for (const pool of pools ?? []) {
    if (!poolByNode.has(pool.node_id) && liveIds.has(pool.node_id)) poolByNode.set(pool.node_id, pool);
  }
  return { nodes: live, pools: pools ?? [], poolByNode, node_ids: live.map((n) => n.node_id), fromDraw };
}

// collateral: "book", or "marked" to the market (the server adds each node's market price
// where its class traded enough: the pool view's rule).
export async function runStress(fleet, { scenarios, custom, horizon, covenantDscrBps, maxLtvBps, collateral = "book" }) {
  return postJSON("/api/v1/risk/scenarios", {
    node_ids: fleet.node_ids,
    loans_from_draw: fleet.fromDraw,
    collateral,
    scenarios,
    custom,
    horizon_months: horizon,
    covenant_dscr_bps: covenantDscrBps,
    max_ltv_bps: maxLtvBps,
    include_nodes: true,
    include_node_paths: fleet.node_ids.length <= MAX_PATH_NODES,
  });
}
