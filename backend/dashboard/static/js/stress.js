// Building a stress run from what the index knows: every live node; the server adds each
// node's pool debt (principal, tenor, rate, share staked), utilization and ask.
import { postJSON } from "./api.js";
import { bpsOf, loadNodes, loadPools } from "./data.js";

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

// The projection's month is 30 days (backend/risk/formulas.py MONTH_SECONDS).
const MONTH_SECONDS = 2_592_000;

// A drawn pool's loan projected from its draw (month 0): the tenor converted from the
// pool's epochs by its epoch length, as the server does (backend/risk/indexed.py).
function debtFromDraw(pool) {
  const d = pool.debt;
  if (!(d.principal > 0) || !(d.tenor_epochs >= 1)) return null;
  const seconds = d.tenor_epochs * (pool.epoch_length_seconds ?? MONTH_SECONDS);
  return {
    drawn_assets: d.principal,
    tenor_months: Math.min(1_200, Math.max(1, Math.ceil(seconds / MONTH_SECONDS))),
    rate_bps: d.rate_bps ?? 0,
    months_since_draw: 0,
    staked_bps: Math.min(10_000, bpsOf(pool.total_staked, pool.total_shares)),
  };
}

// The indexed fleet, pools by node id, and the request body's node_ids + overrides. The
// server fills in each node's pool loan (where its schedule stands today), trailing
// attested utilization and ask from its index; `fromDraw` overrides the loans to start
// at their draw instead.
export async function indexedFleet({ fromDraw = false } = {}) {
  const [nodes, pools] = await Promise.all([loadNodes(), loadPools()]);
  const live = nodes.filter((n) => n.status !== "exited");
  const liveIds = new Set(live.map((n) => n.node_id));
  const poolByNode = new Map();
  for (const pool of pools ?? []) {
    if (!poolByNode.has(pool.node_id) && liveIds.has(pool.node_id)) poolByNode.set(pool.node_id, pool);
  }
  const overrides = [];
  if (fromDraw) {
    for (const [nodeId, pool] of poolByNode) {
      const debt = debtFromDraw(pool);
      if (debt) overrides.push({ node_id: nodeId, debt });
    }
  }
  return { nodes: live, pools: pools ?? [], poolByNode, node_ids: live.map((n) => n.node_id), overrides };
}

export async function runStress(fleet, { scenarios, custom, horizon, covenantDscrBps, maxLtvBps }) {
  return postJSON("/api/v1/risk/scenarios", {
    node_ids: fleet.node_ids,
    overrides: fleet.overrides,
    scenarios,
    custom,
    horizon_months: horizon,
    covenant_dscr_bps: covenantDscrBps,
    max_ltv_bps: maxLtvBps,
    include_nodes: true,
    include_node_paths: fleet.node_ids.length <= MAX_PATH_NODES,
  });
}
