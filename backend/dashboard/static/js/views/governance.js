// Governance: the admin changes the timelock announced, with their time of effect.
// Every power over users' money is a call the GpucapTimelock makes after its delay
// (README: the table of powers); this lists what will change, when, and what did.
import { getJSON, has } from "../api.js";
import { badge, esc, short, when } from "../format.js";

const ROUTE = "/api/v1/governance/changes";
const STATUS_BADGE = { pending: "warn", ready: "ok", executed: "ok", cancelled: "bad" };
let root;
let served = true;

function argText(value) {
  if (typeof value === "string" && /^0x[0-9a-fA-F]{40}$/.test(value)) return short(value);
  if (typeof value === "string" && /^0x[0-9a-fA-F]{64}$/.test(value)) return `${value.slice(0, 10)}…`;
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// "setUsageTerms(nodeId 5, payer 0x70…C8, pricePerGpuHour 2500000)"; undecoded: the selector.
export function callText(change) {
  if (!change.function) return `${change.data.slice(0, 10)}… (not a gpucap call)`;
  const args = Object.entries(change.args ?? {}).map(([k, v]) => `${k} ${argText(v)}`);
  return `${change.function}(${args.join(", ")})`;
}

function untilText(eta) {
  const s = Math.round(eta - Date.now() / 1000);
  if (s <= 0) return "due";
  if (s < 120) return `in ${s} s`;
  if (s < 7200) return `in ${Math.round(s / 60)} min`;
  if (s < 172800) return `in ${Math.round(s / 3600)} h`;
  return `in ${Math.round(s / 86400)} days`;
}

function row(c, { upcoming }) {
  const effect = upcoming
    ? `${when(c.eta)} <span class="muted">(${c.status === "ready" ? "due" : untilText(c.eta)})</span>`
    : when(c.executed_at ?? c.cancelled_at);
  return (
    `<tr data-operation="${esc(c.operation_id)}"><td>${badge(c.status, STATUS_BADGE[c.status] ?? "warn")}</td>` +
    `<td>${effect}</td><td>${esc(c.contract ?? "unknown contract")} <span class="mono muted">${esc(short(c.target))}</span></td>` +
    `<td class="mono call">${esc(callText(c))}</td><td class="mono">${esc(c.operation_id.slice(0, 10))}…</td></tr>`
  );
}

function table(id, changes, upcoming, empty) {
  const el = root.querySelector(id);
  const head = `<thead><tr><th scope="col">status</th><th scope="col">${upcoming ? "time of effect" : "when"}</th><th scope="col">target</th><th scope="col">call</th><th scope="col">operation</th></tr></thead>`;
  const body = changes.map((c) => row(c, { upcoming })).join("") || `<tr><td colspan="5" class="muted">${esc(empty)}</td></tr>`;
  el.innerHTML = el.querySelector("caption").outerHTML + head + `<tbody>${body}</tbody>`;
}

export const governanceView = {
  async init(panel) {
    root = panel;
    served = has(ROUTE);
  },

  notice() {
    return served ? "" : "This API does not serve the timelock's schedule (GET /api/v1/governance/changes).";
  },

  async refresh() {
    if (!served) return;
    const [pending, ready, executed, cancelled] = await Promise.all(
      ["pending", "ready", "executed", "cancelled"].map((s) => getJSON(`${ROUTE}?status=${s}&limit=200`)),
    );
    const upcoming = [...ready, ...pending];
    const past = [...executed, ...cancelled].sort(
      (a, b) => (b.executed_at ?? b.cancelled_at) - (a.executed_at ?? a.cancelled_at),
    );
    root.querySelector("#governance-kpis").innerHTML = [
      ["Waiting for their time", pending.length, "announced, not yet due"],
      ["Due", ready.length, "anyone may execute them now"],
      ["Executed", executed.length, "changes in effect"],
      ["Cancelled", cancelled.length, "withdrawn before taking effect"],
    ]
      .map(([l, v, s]) => `<div class="kpi"><div class="label">${esc(l)}</div><div class="value">${esc(v)}</div><div class="sub">${esc(s)}</div></div>`)
      .join("");
    table("#governance-pending", upcoming, true, "No admin change is announced.");
    table("#governance-history", past.slice(0, 50), false, "No change has been executed or cancelled yet.");
  },
};
