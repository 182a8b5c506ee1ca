// Building a stress run from what the index knows: every live node, with its pool's debt
// (principal, tenor, rate, share staked) and its attested utilization as overrides.
import { mapLimited, postJSON } from "./api.js";
import { bpsOf, loadNodeMetrics, loadNodes, loadPools, nodeMetricsServed } from "./data.js";

const PPM = 1_000_000;
const TRAILING_EPOCHS = 12;
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

function debtOf(pool, fromDraw) {
  const d = pool.debt;
  if (!(d.principal > 0) || !(d.tenor_epochs >= 1)) return null;
  // One pool epoch is one month in the projection (backend/risk/fleet.py Debt).
  const since = fromDraw || d.draw_epoch === null || d.draw_epoch === undefined ? 0 : Math.max(0, (pool.current_epoch ?? d.draw_epoch) - d.draw_epoch);
  return {
    drawn_assets: d.principal,
    tenor_months: d.tenor_epochs,
    rate_bps: d.rate_bps ?? 0,
    months_since_draw: Math.min(since, d.tenor_epochs),
    staked_bps: Math.min(10_000, bpsOf(pool.total_staked, pool.total_shares)),
  };
}

// The indexed fleet, pools by node id, and the request body's node_ids + overrides.
// `fromDraw`: project each pool's loan from its draw (month 0) instead of where its
// schedule stands today; one pool epoch is one projected month either way.
export async function indexedFleet({ fromDraw = false } = {}) {
  const [nodes, pools] = await Promise.all([loadNodes(), loadPools()]);
  const live = nodes.filter((n) => n.status !== "exited");
  const poolByNode = new Map();
  for (const pool of pools ?? []) {
    if (!poolByNode.has(pool.node_id) && live.some((n) => n.node_id === pool.node_id)) poolByNode.set(pool.node_id, pool);
  }
  const utilization = new Map();
  if (nodeMetricsServed()) {
    const rows = await mapLimited(live, 4, (n) => loadNodeMetrics(n.node_id, TRAILING_EPOCHS).catch(() => []));
    live.forEach((n, i) => {
      const recent = rows[i].map((r) => r.utilization_bps).filter((u) => typeof u === "number");
      if (recent.length) utilization.set(n.node_id, Math.round(recent.reduce((a, b) => a + b, 0) / recent.length));
    });
  }
  const overrides = [];
  for (const n of live) {
    const pool = poolByNode.get(n.node_id);
    const o = { node_id: n.node_id };
    const debt = pool ? debtOf(pool, fromDraw) : null;
    if (debt) o.debt = debt;
    if (utilization.has(n.node_id)) o.utilization_bps = utilization.get(n.node_id);
    if (Object.keys(o).length > 1) overrides.push(o);
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
