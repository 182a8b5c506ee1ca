// Shared reads, normalised: GPU classes, nodes, pools (with their detail) and metrics.
import { asList, getJSON, has, mapLimited } from "./api.js";

export async function loadClasses() {
  return getJSON("/api/v1/gpu-classes");
}

export async function loadNodes() {
  const nodes = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await getJSON(`/api/v1/nodes?limit=1000&offset=${offset}`);
    nodes.push(...page);
    if (page.length < 1000 || nodes.length >= 10_000) return nodes;
  }
}

export function poolsServed() {
  return has("/api/v1/pools");
}

// Pools with debt and risk: the list's rows, or each pool's detail when the list is a summary.
export async function loadPools() {
  if (!poolsServed()) return null;
  const rows = asList(await getJSON("/api/v1/pools?limit=1000"), "pools");
  const detailed = await mapLimited(rows, 4, async (row) =>
    row.debt && row.risk && row.round ? row : { ...row, ...(await getJSON(`/api/v1/pools/${row.address}`)) },
  );
  return detailed.map((p) => ({ ...p, round: p.round ?? {}, debt: p.debt ?? {}, risk: p.risk ?? {}, settled: Boolean(p.risk) }));
}

// Share amounts are 18-decimal integers sent as decimal strings (they exceed 2^53).
export const SHARE = 10n ** 18n;

export function big(value) {
  try {
    return BigInt(value ?? 0);
  } catch {
    return 0n;
  }
}

export function shares(value) {
  return Number(big(value)) / 1e18;
}

// part / whole in bps, exactly (0 when whole is 0).
export function bpsOf(part, whole) {
  const w = big(whole);
  return w === 0n ? 0 : Number((big(part) * 10_000n) / w);
}

// Stablecoin value of `amount` shares at the pool's share price (units per whole share).
export function shareValue(pool, amount) {
  return Number((big(amount) * big(pool.round.share_price ?? 0)) / SHARE);
}

export function poolLabel(pool) {
  return pool.name || pool.symbol || `${pool.address.slice(0, 8)}…`;
}

// Energy of a row in kWh: from joules (leaf v2), else from the derived whole Wh; null when
// the row says its energy is unknown (energy_coverage_bps 0: the 0 J is not a measurement).
export function energyKwh(row, joulesKey = "energy_joules", whKey = "energy_wh") {
  if (row?.energy_coverage_bps === 0) return null;
  if (typeof row?.[joulesKey] === "number") return row[joulesKey] / 3.6e6;
  if (typeof row?.[whKey] === "number") return row[whKey] / 1000;
  return null;
}

// A metric row's energy efficiency as one number: delivered GPU-hours per kWh (what
// /nodes/{id}/metrics serves as energy_efficiency), else computed from the row's figures.
export function efficiency(row) {
  // Served (a node's row, or a fleet/class row pairing GPU-hours with the energy of the
  // same nodes): null means unknown, never recomputed from totals that mix in nodes
  // whose energy is unknown.
  if (row && "energy_efficiency" in row) return row.energy_efficiency;
  const kwh = energyKwh(row);
  if (kwh > 0) {
    const gpuHours = row.gpu_hours ?? (row.milli_gpu_hours === undefined ? undefined : row.milli_gpu_hours / 1000);
    if (gpuHours !== undefined) return gpuHours / kwh;
  }
  return null;
}

export function nodeMetricsServed() {
  return has("/api/v1/nodes/{node_id}/metrics") || has("/api/v1/nodes/{id}/metrics");
}

// The node's newest `limit` attested epochs (the API pages newest first), oldest first.
// A figure whose coverage is 0 was published as 0 but not measured: null (unknown), so no
// chart or mean takes it for idle.
export async function loadNodeMetrics(nodeId, limit = 100) {
  if (!nodeMetricsServed()) return [];
  const rows = asList(await getJSON(`/api/v1/nodes/${nodeId}/metrics?limit=${limit}`), "metrics", "epochs");
  return [...rows]
    .map((r) => ({
      ...r,
      utilization_bps: r.utilization_coverage_bps === 0 ? null : r.utilization_bps,
      uptime_bps: r.sample_coverage_bps === 0 ? null : r.uptime_bps,
    }))
    .sort((a, b) => a.epoch - b.epoch);
}

// Per-epoch, per-class rows from /fleet/metrics, flattened to {epoch, class, ...figures}.
export async function loadFleetMetrics(classes, epochs = 60) {
  if (!has("/api/v1/fleet/metrics")) return null;
  const body = await getJSON(`/api/v1/fleet/metrics?epochs=${epochs}`);
  const names = new Map(classes.map((c) => [c.class_id, c.name]));
  const out = [];
  const push = (epoch, row) =>
    out.push({
      epoch,
      cls: row.class_name ?? row.name ?? names.get(row.class_id) ?? `class ${row.class_id}`,
      uptime_bps: row.uptime_bps ?? row.mean_uptime_bps ?? null,
      utilization_bps: row.utilization_bps ?? row.mean_utilization_bps ?? null,
      efficiency: efficiency(row),
    });
  for (const entry of asList(body, "epochs", "metrics")) {
    const nested = entry.classes ?? entry.by_class;
    if (Array.isArray(nested)) nested.forEach((r) => push(entry.epoch, r));
    else if (nested && typeof nested === "object") {
      Object.entries(nested).forEach(([name, r]) => push(entry.epoch, { class_name: name, ...r }));
    } else push(entry.epoch, entry);
  }
  return out.sort((a, b) => a.epoch - b.epoch);
}
