// The page: tabs (hash-routed), a refresh loop that keeps the active view breathing,
// the status bar (index lag, newest epoch) and the wallet button.
import { getJSON, loadRoutes } from "./api.js";
import { ago } from "./format.js";
import { chartsAvailable } from "./charts.js";
import { initWallet } from "./wallet.js";
import { fleetView } from "./views/fleet.js";
import { governanceView } from "./views/governance.js";
import { marketView } from "./views/market.js";
import { poolsView } from "./views/pools.js";
import { stakerView } from "./views/staker.js";
import { stressView } from "./views/stress.js";

const REFRESH_MS = 5000;
const views = {
  fleet: fleetView,
  market: marketView,
  pools: poolsView,
  staker: stakerView,
  stress: stressView,
  governance: governanceView,
};
const started = new Set();
let active = null;
let timer = null;
let busy = false;

function panel(name) {
  return document.getElementById(`view-${name}`);
}

export function showNotice(root, message, kind = "") {
  const box = root.querySelector(":scope > .notice");
  if (!box) return;
  box.hidden = !message;
  box.className = `notice ${kind}`.trim();
  box.textContent = message ?? "";
}

async function refreshStatus() {
  const pulse = document.getElementById("pulse");
  const text = document.getElementById("status-text");
  try {
    const [indexer, epochs, health] = await Promise.all([
      getJSON("/api/v1/indexer").catch((e) => (e.status === 503 ? null : Promise.reject(e))),
      getJSON("/api/v1/epochs?limit=1"),
      readHealth(),
    ]);
    const parts = [];
    if (indexer) {
      parts.push(`chain ${indexer.chain_id}`, `block ${indexer.head_block}`, `index lag ${indexer.lag_blocks}`);
    } else {
      parts.push("indexer starting");
    }
    if (epochs.length) parts.push(`epoch ${epochs[0].epoch} attested ${ago(epochs[0].attested_at)}`);
    parts.push(...workParts(health));
    parts.push(`updated ${new Date().toLocaleTimeString()}`);
    text.textContent = parts.join(" · ");
    const failing = health ? Object.entries(health.checks).filter(([, c]) => !c.ok) : [];
    const status = document.getElementById("status");
    status.title = failing.length
      ? failing.map(([name, c]) => `${name}: ${c.detail}`).join("\n")
      : health ? "every part and its work is healthy" : "health unknown";
    // Green only when the index is current and /health says the work goes on.
    const fresh = indexer && indexer.lag_blocks <= 5 && health && health.status === "ok";
    pulse.className = fresh ? "pulse" : "pulse stale";
    void pulse.offsetWidth; // restart the beat animation
    pulse.classList.add("beat");
  } catch (err) {
    pulse.className = "pulse down";
    text.textContent = `API unreachable (${err.message}); retrying`;
  }
}

// /health answers 503 with the same body when something is stale: read it either way.
async function readHealth() {
  try {
    const resp = await fetch("/health", { headers: { accept: "application/json" } });
    return await resp.json();
  } catch {
    return null;
  }
}

// The work behind the parts, in the header's words: attestation, oracles, settlement, relay.
function workParts(health) {
  if (!health) return ["health unknown"];
  const c = health.checks;
  const parts = [];
  if (c.attestation && c.attestation.epochs_waiting !== undefined) {
    const waiting = c.attestation.epochs_waiting;
    parts.push(waiting ? `${waiting} epoch(s) unattested for ${c.attestation.lag_seconds}s` : "attestation current");
  }
  if (c.oracles && c.oracles.oracles) {
    const live = c.oracles.oracles.filter((o) => o.ok).length;
    parts.push(`oracles ${live}/${c.oracles.oracles.length}`);
  }
  if (c.keeper && c.keeper.epochs_behind !== undefined) parts.push(`settlement ${c.keeper.epochs_behind} epoch(s) behind`);
  if (c.relayer && c.relayer.pending) parts.push(`oldest pending ${Math.round(c.relayer.oldest_pending_age_s)}s`);
  if (health.status !== "ok") {
    const names = Object.entries(c).filter(([, v]) => !v.ok).map(([k]) => k);
    parts.push(`degraded: ${names.join(", ")}`);
  }
  return parts;
}

async function tick() {
  if (busy || document.hidden || !active) return;
  busy = true;
  try {
    await refreshStatus();
    const view = views[active];
    try {
      await view.refresh();
      if (!view.ownsNotice) showNotice(panel(active), view.notice?.() ?? "");
    } catch (err) {
      showNotice(panel(active), `Could not load this view: ${err.message}`, "error");
    }
  } finally {
    busy = false;
  }
}

async function select(name, { focus = false } = {}) {
  if (!views[name]) name = "fleet";
  active = name;
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const on = tab.dataset.view === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    if (on && focus) tab.focus();
  }
  for (const key of Object.keys(views)) panel(key).hidden = key !== name;
  if (!started.has(name)) {
    started.add(name);
    await views[name].init(panel(name));
  }
  await tick();
}

function wireTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      history.replaceState(null, "", `#${tab.dataset.view}`);
      select(tab.dataset.view);
    });
    tab.addEventListener("keydown", (e) => {
      const i = tabs.indexOf(tab);
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      history.replaceState(null, "", `#${next.dataset.view}`);
      select(next.dataset.view, { focus: true });
    });
  }
  window.addEventListener("hashchange", () => select(location.hash.slice(1)));
}

async function main() {
  if (!chartsAvailable()) {
    document.getElementById("status-text").textContent =
      "Chart.js is not installed on this server (run `make setup`): charts are off";
  }
  await loadRoutes();
  initWallet();
  wireTabs();
  await select(location.hash.slice(1) || "fleet");
  timer = setInterval(tick, REFRESH_MS);
  document.addEventListener("visibilitychange", () => !document.hidden && tick());
  document.body.dataset.ready = "true";
}

main().catch((err) => {
  document.getElementById("status-text").textContent = `Dashboard failed to start: ${err.message}`;
  document.getElementById("pulse").className = "pulse down";
  clearInterval(timer);
});
