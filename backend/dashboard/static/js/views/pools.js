// Pools: each revenue-share pool's raise, debt and covenant state, and its history.
import { asList, getJSON, has } from "../api.js";
import { color, line, reference, render } from "../charts.js";
import { loadPools, poolLabel, poolsServed, shareValue } from "../data.js";
import { badge, esc, num, pct, ratio, short, usd } from "../format.js";

const COVENANT_DSCR_BPS = 12_500; // deployment defaults (scripts/deploy.py DeployConfig)
const MAX_LTV_BPS = 8_000;
let root;
let selected = null;
let loans = new Map(); // pool address -> its loan, as the last refresh read it
let collaterals = new Map(); // pool address -> its node's collateral (book and marked)

function renderCollateral() {
  const p = root.querySelector("#pool-collateral-summary");
  if (p) p.textContent = selected ? collateralSummary(selected.collateral) : "";
}

export function riskBadges(risk) {
  if (risk.flagged === undefined) return badge("not settled yet", "warn");
  const out = [];
  if (risk.dscr_breach) out.push(badge("DSCR breach", "bad"));
  if (risk.ltv_breach) out.push(badge("LTV breach", "bad"));
  if (risk.flagged && !risk.dscr_breach && !risk.ltv_breach) out.push(badge("flagged", "warn"));
  return out.join("") || badge("within covenants", "ok");
}

async function renderHistory() {
  const card = root.querySelector("#pool-detail");
  if (!selected || !has("/api/v1/pools/{address}/history")) {
    card.hidden = true;
    return;
  }
  card.hidden = false;
  root.querySelector("#pool-detail-title").textContent = `${selected.label}: history`;
  const rows = asList(await getJSON(`/api/v1/pools/${selected.address}/history`), "history", "epochs", "events");
  const points = rows.filter((r) => r && typeof r === "object").sort((a, b) => (a.epoch ?? 0) - (b.epoch ?? 0));
  const ratios = ["dscr_bps", "ltv_bps"].filter((k) => points.some((r) => typeof (r[k] ?? r.risk?.[k]) === "number"));
  const amounts = Object.keys(points[0] ?? {}).filter(
    (k) => !k.endsWith("_bps") && !["epoch", "block_number", "block", "timestamp", "log_index"].includes(k) && points.some((r) => typeof r[k] === "number"),
  );
  render("pools-history-chart", {
    type: "line",
    data: {
      labels: points.map((r, i) => r.epoch ?? i + 1),
      datasets: [
        ...ratios.map((k, i) => line(k === "dscr_bps" ? "DSCR ×" : "LTV ×", points.map((r) => (r[k] ?? r.risk?.[k] ?? null) / 10_000), i)),
        ...amounts.slice(0, 4).map((k, i) => line(`${k.replaceAll("_", " ")} (tUSD)`, points.map((r) => (typeof r[k] === "number" ? r[k] / 1e6 : null)), i + 2, { yAxisID: "usd" })),
      ],
    },
    options: {
      scales: {
        y: { display: ratios.length > 0, beginAtZero: true, title: { display: true, text: "ratio ×" } },
        usd: { position: ratios.length ? "right" : "left", beginAtZero: true, title: { display: true, text: "tUSD" }, grid: { drawOnChartArea: false } },
        x: { title: { display: true, text: "epoch" } },
      },
    },
  });
}

const LOAN_BADGES = { performing: "ok", cash_sweep: "warn", defaulted: "bad" };

// The pool loan's state (PoolLoans): a cash sweep shows its cure progress, a default its
// claim; null until the raise is drawn (or from a server without loans).
export function loanBadge(loan) {
  if (!loan) return '<span class="muted">—</span>';
  let text = loan.state.replace("_", " ");
  if (loan.state === "cash_sweep" && loan.runs) text += ` ${loan.runs.clean_epochs}/${loan.runs.cure_epochs}`;
  const since = loan.since_epoch === null ? "" : ` <span class="muted">since ${esc(loan.since_epoch)}</span>`;
  const due = loan.default_due ? badge("default due", "bad") : "";
  return badge(text, LOAN_BADGES[loan.state] ?? "warn") + due + since;
}

function loanSummary(loan) {
  if (!loan) return "No loan: the raise has not been drawn.";
  const parts = [
    `State ${loan.state.replace("_", " ")}${loan.since_epoch === null ? "" : ` since epoch ${loan.since_epoch}`}`,
    `arrears ${usd(loan.arrears_micro_usd)} (default above ${usd(loan.default_arrears_threshold_micro_usd)})`,
    `pledged bond ${usd(loan.pledged_bond_micro_usd)}`,
  ];
  if (loan.runs) {
    if (loan.state === "cash_sweep") parts.push(`clean settlements ${loan.runs.clean_epochs}/${loan.runs.cure_epochs} to cure`);
    parts.push(`DSCR under ${ratio(loan.runs.default_dscr_floor_bps)} ${loan.runs.low_dscr_epochs}/${loan.runs.default_dscr_epochs} to default`);
  }
  const d = loan.default;
  if (d) {
    parts.push(
      `defaulted at epoch ${d.epoch}: bond seized ${usd(d.bond_seized_micro_usd)}, stakers' loss ${usd(d.stakers_loss_micro_usd)}, ` +
        `reserve cover ${usd(d.reserve_cover_micro_usd)}, holders' loss ${usd(d.holders_loss_micro_usd)}; ` +
        `recovery ${usd(d.recovered_micro_usd)} of ${usd(d.recovery_claim_micro_usd)} repaid`,
    );
  }
  return parts.join(" · ") + ".";
}

// The node's collateral: its book value, and under it its value marked to the market
// (the lower of book and what its class's trades imply): "▾ value" where the market
// marks it down, "= book" where it does not (the title says why). Narrow: the pools
// table fits 1,400 px.
export function collateralCell(p) {
  const c = p.collateral;
  if (!c) return `<td class="num" data-col="collateral" data-basis="">${usd(p.risk.collateral_value)}</td>`;
  const why =
    c.basis === "market"
      ? `marked to the market: ${usd(c.marked_value)}, below book`
      : c.market_value === null
        ? "marked at book: too few trades to mark to"
        : `marked at book: the market implies more (${usd(c.market_value)})`;
  const shown = c.basis === "market" ? `▾ ${usd(c.marked_value)}` : "= book";
  return `<td class="num" data-col="collateral" data-basis="${esc(c.basis)}"><span data-value="book">${usd(c.book_value)}</span><span class="muted under" data-value="marked" data-marked="${esc(c.marked_value)}" title="${esc(why)}">${esc(shown)}</span></td>`;
}

function collateralSummary(c) {
  if (!c) return "This server does not mark collateral yet (no collateral in GET /api/v1/pools).";
  const m = c.market;
  const r = c.rule;
  const hours = (s) => `${num(s / 3600, 1)} h`;
  const parts = [
    `Book ${usd(c.book_value)} (${c.curve.replace("_", " ")})`,
    c.market_value === null ? "no market value" : `market ${usd(c.market_value)}`,
    `marked ${usd(c.marked_value)} (${c.basis})`,
    `LTV ${pct(c.ltv_bps_book)} at book, ${pct(c.ltv_bps_marked)} marked`,
  ];
  const price = m.price_per_gpu_hour === null ? "no trades" : `VWAP ${usd(m.price_per_gpu_hour)} / GPU-h`;
  const enough = m.enough ? "enough to mark" : `not enough to mark (takes ${r.min_trades} trades and ${usd(r.min_volume)})`;
  return (
    parts.join(" · ") +
    `. Class ${esc(m.class_id)} in the last ${hours(r.lookback_seconds)} (${r.source}): ${m.trades} trades, ${usd(m.volume)}, ${price}, ${enough}; ` +
    `${m.excluded.trades} wash trades left out. The market value is the node's remaining ${hours(c.remaining_life_seconds)} of life ` +
    `× its GPUs × ${pct(c.utilization_bps, 0)} sold (${c.utilization_attested ? "attested" : "assumed"}) at that price, ${pct(c.capital_share_bps, 0)} of it for the capital, plus the residual.`
  );
}

async function renderLoan() {
  const table = root.querySelector("#pool-loan-history");
  const summary = root.querySelector("#pool-loan-summary");
  if (!selected || !has("/api/v1/pools/{address}/loan/history")) {
    summary.textContent = "This server does not serve pool loans yet.";
    table.innerHTML = table.querySelector("caption").outerHTML;
    return;
  }
  summary.textContent = loanSummary(selected.loan);
  const events = asList(await getJSON(`/api/v1/pools/${selected.address}/loan/history`), "history");
  const rows = events.map((h) => {
    const change = h.to_state ? `${esc(h.from_state)} → ${esc(h.to_state)}` : "";
    const amounts = Object.entries(h.amounts_micro_usd ?? {})
      .map(([k, v]) => `${esc(k.replaceAll("_", " "))} ${usd(v)}`)
      .join(", ");
    return `<tr data-loan-event="${esc(h.event)}"><td class="num">${esc(h.block_number)}</td><td class="num">${esc(h.epoch ?? "—")}</td><td>${esc(h.event)}</td><td>${change}</td><td>${amounts}</td><td class="mono">${short(h.tx_hash)}</td></tr>`;
  });
  table.innerHTML =
    table.querySelector("caption").outerHTML +
    '<thead><tr><th class="num" scope="col">block</th><th class="num" scope="col">epoch</th><th scope="col">event</th><th scope="col">state</th><th scope="col">amounts</th><th scope="col">tx</th></tr></thead>' +
    `<tbody>${rows.join("") || '<tr><td colspan="6" class="muted">No loan event yet.</td></tr>'}</tbody>`;
}

export const poolsView = {
  notice() {
    return poolsServed() ? "" : "This server does not serve pools yet (GET /api/v1/pools): nothing to show here.";
  },

  async init(panel) {
    root = panel;
    root.querySelector("#pools-table").addEventListener("click", (e) => {
      const row = e.target.closest("[data-pool]");
      if (!row) return;
      selected = { address: row.dataset.pool, label: row.dataset.label, loan: loans.get(row.dataset.pool) ?? null, collateral: collaterals.get(row.dataset.pool) ?? null };
      for (const tr of root.querySelectorAll("#pools-table tr[data-pool]")) {
        tr.classList.toggle("selected", tr.dataset.pool === selected.address);
      }
      renderHistory();
      renderLoan();
      renderCollateral();
    });
  },

  async refresh() {
    const pools = (await loadPools()) ?? [];
    const sum = (f) => pools.reduce((s, p) => s + (f(p) ?? 0), 0);
    const flagged = pools.filter((p) => p.risk.flagged || p.risk.dscr_breach || p.risk.ltv_breach);
    root.querySelector("#pools-kpis").innerHTML = [
      ["Pools", String(pools.length), `${flagged.length} flagged`],
      ["Raised", usd(sum((p) => p.round.raised), { compact: true }), `target ${usd(sum((p) => p.round.target), { compact: true })}`],
      ["Debt outstanding", usd(sum((p) => p.debt.outstanding), { compact: true }), `arrears ${usd(sum((p) => p.debt.arrears), { compact: true })}`],
      ["Staked", usd(sum((p) => shareValue(p, p.total_staked)), { compact: true }), "at share price: first loss after bonds"],
      ["Revenue distributed", usd(sum((p) => p.revenue_distributed), { compact: true }), `losses booked ${usd(sum((p) => p.losses_booked), { compact: true })}`],
      ["Collateral marked", usd(sum((p) => p.collateral?.marked_value), { compact: true }), `book ${usd(sum((p) => p.collateral?.book_value), { compact: true })}`],
    ]
      .map(([l, v, s]) => `<div class="kpi"><div class="label">${esc(l)}</div><div class="value">${esc(v)}</div><div class="sub">${esc(s)}</div></div>`)
      .join("");

    const labels = pools.map(poolLabel);
    render("pools-risk-chart", {
      type: "bar",
      data: {
        labels,
        datasets: [
          { label: "DSCR ×", data: pools.map((p) => (p.risk.dscr_bps ?? null) === null ? null : p.risk.dscr_bps / 10_000), backgroundColor: pools.map((p) => (p.risk.dscr_breach ? "#cf222e" : color(0))) },
          { label: "LTV ×", data: pools.map((p) => (p.risk.ltv_bps ?? null) === null ? null : p.risk.ltv_bps / 10_000), backgroundColor: pools.map((p) => (p.risk.ltv_breach ? "#cf222e" : color(1))) },
          { ...reference(`DSCR covenant ${ratio(COVENANT_DSCR_BPS)}`, COVENANT_DSCR_BPS / 10_000, labels.length), type: "line" },
          { ...reference(`max LTV ${pct(MAX_LTV_BPS, 0)}`, MAX_LTV_BPS / 10_000, labels.length, "#9a6700"), type: "line" },
        ],
      },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "ratio ×" } } } },
    });

    loans = new Map(pools.map((p) => [p.address, p.loan ?? null]));
    collaterals = new Map(pools.map((p) => [p.address, p.collateral ?? null]));
    if (selected) {
      selected.loan = loans.get(selected.address) ?? null;
      selected.collateral = collaterals.get(selected.address) ?? null;
    }
    const table = root.querySelector("#pools-table");
    const rows = pools.map((p) => {
      const r = p.round;
      const d = p.debt;
      return `<tr data-pool="${esc(p.address)}" data-label="${esc(poolLabel(p))}" class="${selected?.address === p.address ? "selected" : ""}">
        <td><button type="button" class="link">${esc(poolLabel(p))}</button> <span class="muted mono under">${short(p.address)}</span></td>
        <td>#${esc(p.node_id)}</td><td class="mono">${short(p.operator)}</td><td>${esc(r.state ?? "—")}</td>
        <td class="num">${usd(r.raised)} / ${usd(r.target)}</td><td class="num">${usd(d.principal)}</td><td class="num">${usd(d.outstanding)}</td>
        <td class="num">${usd(d.arrears)}</td><td class="num">${pct(d.rate_bps)}</td>${collateralCell(p)}
        <td class="num">${ratio(p.risk.dscr_bps)}</td><td class="num">${pct(p.risk.ltv_bps)}</td><td class="badges">${riskBadges(p.risk)}</td><td class="badges" data-loan-state="${esc(p.loan?.state ?? "")}">${loanBadge(p.loan)}</td></tr>`;
    });
    table.innerHTML =
      table.querySelector("caption").outerHTML +
      '<thead><tr><th scope="col">pool</th><th scope="col">node</th><th scope="col">operator</th><th scope="col">round</th><th class="num" scope="col">raised / target</th><th class="num" scope="col">principal</th><th class="num" scope="col">outstanding</th><th class="num" scope="col">arrears</th><th class="num" scope="col">rate / yr</th><th class="num" scope="col" title="book value; under it, marked to the market: the lower of book and what GPU-hour trades of its class imply">collateral</th><th class="num" scope="col">DSCR</th><th class="num" scope="col">LTV</th><th scope="col">covenants</th><th scope="col">loan</th></tr></thead>' +
      `<tbody>${rows.join("") || '<tr><td colspan="14" class="muted">No pool yet.</td></tr>'}</tbody>`;
    if (selected) {
      renderCollateral();
      await Promise.all([renderHistory(), renderLoan()]);
    }
  },
};
