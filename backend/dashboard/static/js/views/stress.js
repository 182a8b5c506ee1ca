// Stress: run named or custom worlds over the indexed fleet and read at a glance which
// pools breach their DSCR covenant, when, and what stakers lose.
import { getJSON } from "../api.js";
import { color, line, reference, render } from "../charts.js";
import { loadClasses, poolLabel, poolsServed, shareValue } from "../data.js";
import { esc, monthLabel, pct, ratio, usd } from "../format.js";
import { classShock, indexedFleet, runStress } from "../stress.js";

const DEFAULT_NAMED = new Set(["base", "deflation_20", "deflation_40"]);
// DSCR runs from below 1x to tens of x (a lightly financed pool, the platform as a whole):
// on a linear axis capped at 5x such a line sat flat at the cap and said nothing. A log
// axis shows the real figure and keeps the covenant (1.25x) readable; coverage under the
// floor (including none or negative: costs above revenue) is drawn on the floor as a red
// triangle pointing down, and its tooltip gives the real figure.
const DSCR_FLOOR = 0.1;
let root;
let run = null; // {fleet, body, covenantDscrBps, maxLtvBps}

function poolName(fleet, nodeId) {
  const pool = fleet.poolByNode.get(nodeId);
  return pool ? poolLabel(pool) : `node #${nodeId}`;
}

function answer(result) {
  const { fleet, response, covenantDscrBps } = run;
  const pooled = (result.nodes ?? []).filter((n) => n.has_pool);
  const breaching = pooled.filter((n) => n.first_dscr_breach_month !== null).sort((a, b) => a.first_dscr_breach_month - b.first_dscr_breach_month);
  const defaulting = pooled.filter((n) => n.first_default_month !== null);
  const w = result.platform.waterfall;
  const staked = [...fleet.poolByNode.values()].reduce((s, p) => s + shareValue(p, p.total_staked), 0);
  const box = root.querySelector("#stress-answer");
  box.className = `card answer ${breaching.length ? "bad" : "ok"}`;
  const when = (m) => `month ${m} (${monthLabel(response.start_time, m)})`;
  const list = breaching
    .map((n) => `<strong>${esc(poolName(fleet, n.node_id))}</strong> in ${when(n.first_dscr_breach_month)}`)
    .join(", ");
  const lead = `<h2>${esc(result.scenario.description)}</h2>`;
  if (!pooled.length) {
    box.innerHTML = `${lead}<p>No indexed node carries pool debt${poolsServed() ? "" : " (this server does not serve pools yet)"}, so no DSCR covenant can breach. ${response.node_count} nodes projected over ${response.horizon_months} months; total loss ${usd(result.platform.total_loss)}.</p>`;
    return;
  }
  box.innerHTML = `${lead}
    <p data-answer="breaches"><strong>${breaching.length} of ${pooled.length}</strong> pools breach their DSCR covenant (≥ ${ratio(covenantDscrBps)})${breaching.length ? `: ${list}` : ""}. ${defaulting.length} default within ${response.horizon_months} months.</p>
    <p data-answer="stakers">Stakers would lose <strong>${usd(w.stakers)}</strong>${staked > 0 ? ` (${pct((w.stakers * 10_000) / staked)} of the ${usd(staked)} staked today)` : ""}.
    Total loss ${usd(result.platform.total_loss)}: operator bonds ${usd(w.operator_bond)} · stakers ${usd(w.stakers)} · insurance ${usd(w.insurance_reserve)} · other holders ${usd(w.holders)}.</p>`;
}

// A DSCR line on the log axis: values under the floor sit on it, marked, real figure kept.
function onDscrFloor(dataset) {
  const real = dataset.data;
  const low = (i) => real[i] !== null && real[i] < DSCR_FLOOR;
  return {
    ...dataset,
    real,
    data: real.map((v) => (v === null ? null : Math.max(v, DSCR_FLOOR))),
    pointStyle: (ctx) => (low(ctx.dataIndex) ? "triangle" : "circle"),
    pointRotation: (ctx) => (low(ctx.dataIndex) ? 180 : 0),
    pointRadius: (ctx) => (low(ctx.dataIndex) ? 6 : 3),
    pointBackgroundColor: (ctx) => (low(ctx.dataIndex) ? "#cf222e" : dataset.borderColor),
  };
}

function dscrLabel(ctx) {
  const value = ctx.dataset.real?.[ctx.dataIndex] ?? ctx.parsed.y;
  return `${ctx.dataset.label}: ${value.toFixed(2)}×`;
}

function renderPicked() {
  const { response, covenantDscrBps, maxLtvBps, fleet } = run;
  const result = response.results[Number(root.querySelector("#stress-pick").value)];
  answer(result);
  const months = Array.from({ length: response.horizon_months }, (_, i) => monthLabel(response.start_time, i + 1));
  // One line per pool; without per-node paths (a large fleet), the platform's aggregate;
  // without any debt, nothing (a DSCR or LTV of no loan means nothing).
  const withDebt = (result.nodes ?? []).filter((n) => n.has_pool);
  const pooled = withDebt.filter((n) => n.paths);
  const scaled = (values, scale, cap) => values.map((v) => (v === null ? null : Math.min(v / scale, cap)));
  const series = (field, scale, cap) => {
    if (pooled.length) return pooled.map((n, i) => line(poolName(fleet, n.node_id), scaled(n.paths[field], scale, cap), i));
    if (withDebt.length) return [line("platform (all pools)", scaled(result.platform[field], scale, cap), 0)];
    return [];
  };
  render("stress-dscr-chart", {
    type: "line",
    data: { labels: months, datasets: [...series("dscr_bps", 10_000, Infinity).map(onDscrFloor), reference(`covenant ${ratio(covenantDscrBps)}`, covenantDscrBps / 10_000, months.length)] },
    options: {
      scales: { y: { type: "logarithmic", min: DSCR_FLOOR, title: { display: true, text: `DSCR × (log scale; ▼ below ${DSCR_FLOOR}×)` } } },
      plugins: { tooltip: { callbacks: { label: dscrLabel } } },
    },
  });
  render("stress-ltv-chart", {
    type: "line",
    data: { labels: months, datasets: [...series("ltv_bps", 100, 1000), reference(`max LTV ${pct(maxLtvBps, 0)}`, maxLtvBps / 100, months.length, "#9a6700")] },
    options: { scales: { y: { beginAtZero: true, title: { display: true, text: "LTV %" } } } },
  });

  const rows = (result.nodes ?? [])
    .filter((n) => n.has_pool)
    .sort((a, b) => (a.first_dscr_breach_month ?? 1e9) - (b.first_dscr_breach_month ?? 1e9))
    .map(
      (n) => `<tr><td>${esc(poolName(fleet, n.node_id))}</td><td>#${n.node_id}</td><td>${esc(n.class_name)}</td>
      <td>${n.first_dscr_breach_month === null ? '<span class="badge ok">none</span>' : `<span class="badge bad">month ${n.first_dscr_breach_month}</span> ${monthLabel(response.start_time, n.first_dscr_breach_month)}`}</td>
      <td>${n.first_default_month === null ? "—" : `month ${n.first_default_month}`}</td><td class="num">${ratio(n.min_dscr_bps)}</td><td class="num">${pct(n.max_ltv_bps)}</td>
      <td class="num">${usd(n.waterfall.operator_bond)}</td><td class="num">${usd(n.waterfall.stakers)}</td><td class="num">${usd(n.total_loss)}</td></tr>`,
    );
  const table = root.querySelector("#stress-pools");
  table.innerHTML =
    table.querySelector("caption").outerHTML +
    '<thead><tr><th scope="col">pool</th><th scope="col">node</th><th scope="col">class</th><th scope="col">first DSCR breach</th><th scope="col">default</th><th class="num" scope="col">min DSCR</th><th class="num" scope="col">max LTV</th><th class="num" scope="col">bond lost</th><th class="num" scope="col">stakers lose</th><th class="num" scope="col">total loss</th></tr></thead>' +
    `<tbody>${rows.join("") || '<tr><td colspan="10" class="muted">No pool in the projected fleet.</td></tr>'}</tbody>`;
}

function renderRun() {
  const { response } = run;
  const pick = root.querySelector("#stress-pick");
  pick.innerHTML = response.results.map((r, i) => `<option value="${i}">${esc(r.scenario.name)}</option>`).join("");
  root.querySelector("#stress-results").hidden = false;
  const names = response.results.map((r) => r.scenario.name);
  const tiers = [
    ["operator bonds", "operator_bond"],
    ["stakers", "stakers"],
    ["insurance reserve", "insurance_reserve"],
    ["other holders", "holders"],
  ];
  render("stress-waterfall-chart", {
    type: "bar",
    data: { labels: names, datasets: tiers.map(([label, key], i) => ({ label, data: response.results.map((r) => r.platform.waterfall[key] / 1e6), backgroundColor: color(i) })) },
    options: { indexAxis: "y", scales: { x: { stacked: true, title: { display: true, text: "loss (tUSD)" } }, y: { stacked: true } } },
  });
  const summary = response.results.map((r) => {
    const p = r.platform;
    const pooled = (r.nodes ?? []).filter((n) => n.has_pool);
    const breaching = pooled.filter((n) => n.first_dscr_breach_month !== null).length;
    return `<tr><td>${esc(r.scenario.name)}</td><td class="num">${breaching} / ${pooled.length}</td><td class="num">${p.nodes_defaulting}</td><td>${p.first_breach_month ?? "—"}</td><td class="num">${usd(p.waterfall.stakers)}</td><td class="num">${usd(p.total_loss)}</td><td class="desc">${esc(r.scenario.description)}</td></tr>`;
  });
  const table = root.querySelector("#stress-summary");
  table.innerHTML =
    table.querySelector("caption").outerHTML +
    '<thead><tr><th scope="col">scenario</th><th class="num" scope="col">pools breaching DSCR</th><th class="num" scope="col">defaults</th><th scope="col">first breach (month)</th><th class="num" scope="col">stakers lose</th><th class="num" scope="col">total loss</th><th scope="col">what it assumes</th></tr></thead>' +
    `<tbody>${summary.join("")}</tbody>`;
  renderPicked();
}

async function submit(event) {
  event.preventDefault();
  const button = root.querySelector("#stress-run");
  const describe = root.querySelector("#stress-fleet");
  button.disabled = true;
  button.textContent = "Running…";
  try {
    const horizon = Number(root.querySelector("#stress-horizon").value);
    // Left empty: the server runs the chain's covenant (as indexed) and says which it used.
    const typed = (id, scale) => {
      const value = root.querySelector(id).value;
      return value === "" ? undefined : Math.round(Number(value) * scale);
    };
    const asked = { covenantDscrBps: typed("#stress-dscr", 10_000), maxLtvBps: typed("#stress-ltv", 100) };
    const named = [...root.querySelectorAll("#stress-named input:checked")].map((i) => i.value);
    const custom = root.querySelector("#stress-shock-on").checked
      ? [classShock(root.querySelector("#stress-class").value, Math.round(Number(root.querySelector("#stress-decline").value) * 100), horizon)]
      : [];
    if (!named.length && !custom.length) throw new Error("choose at least one scenario");
    const fromDraw = root.querySelector('input[name="stress-debt"]:checked')?.value === "draw";
    const fleet = await indexedFleet({ fromDraw });
    if (!fleet.node_ids.length) throw new Error("no node has been indexed yet: nothing to project");
    const collateral = root.querySelector('input[name="stress-collateral"]:checked')?.value ?? "book";
    const basis = collateral === "marked" ? "collateral marked to the market where its class traded enough" : "collateral at book value";
    describe.textContent = `Projecting ${fleet.node_ids.length} indexed nodes, ${fleet.poolByNode.size} with pool debt, ${basis}.`;
    const response = await runStress(fleet, { scenarios: named, custom, horizon, ...asked, collateral });
    const { covenant_dscr_bps: covenantDscrBps, max_ltv_bps: maxLtvBps } = response.terms;
    // Lead with the custom shock: it is the question the form asked.
    response.results.sort((a, b) => (custom.some((c) => c.name === b.scenario.name) ? 1 : 0) - (custom.some((c) => c.name === a.scenario.name) ? 1 : 0));
    run = { fleet, response, covenantDscrBps, maxLtvBps };
    renderRun();
    root.querySelector(":scope > .notice").hidden = true;
  } catch (err) {
    const box = root.querySelector(":scope > .notice");
    box.hidden = false;
    box.className = "notice error";
    box.textContent = `Scenario run failed: ${err.reason ?? err.message}`;
  } finally {
    button.disabled = false;
    button.textContent = "Run scenarios";
  }
}

export const stressView = {
  async init(panel) {
    root = panel;
    const [scenarios, classes] = await Promise.all([getJSON("/api/v1/risk/scenarios"), loadClasses()]);
    root.querySelector("#stress-named").innerHTML = scenarios
      .map((s) => `<label title="${esc(s.description)}"><input type="checkbox" value="${esc(s.name)}" ${DEFAULT_NAMED.has(s.name) ? "checked" : ""}> ${esc(s.name)}</label>`)
      .join("");
    const select = root.querySelector("#stress-class");
    select.innerHTML = classes.map((c) => `<option value="${esc(c.name)}">${esc(c.name)}</option>`).join("");
    const h100 = classes.find((c) => c.name.startsWith("H100"));
    if (h100) select.value = h100.name;
    root.querySelector("#stress-form").addEventListener("submit", submit);
    root.querySelector("#stress-pick").addEventListener("change", renderPicked);
  },

  // A run is a question asked at one moment: results (and a failed run's reason) stay
  // until the next run.
  ownsNotice: true,
  async refresh() {},
};
