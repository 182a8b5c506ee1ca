// Staker: one address's pool positions (shares, stake, claimable, losses) with each pool's
// risk, its stablecoin and capacity; and what a price shock would cost its stakes.
import { getJSON, has, mapLimited } from "../api.js";
import { big, loadPools, poolLabel, poolsServed, shareValue, shares } from "../data.js";
import { day, esc, num, pct, ratio, short, usd } from "../format.js";
import { classShock, indexedFleet, runStress } from "../stress.js";
import { currentAccount, onAccount } from "../wallet.js";
import { riskBadges } from "./pools.js";

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
let root;
let address = null;
let positions = []; // [{pool, position}]

// Shares held in any form: wallet, staked, cooling down (decimal strings, 18 decimals).
const cooling = (p) => big(p.cooling?.amount ?? p.cooling ?? 0);
const atStake = (p) => big(p.staked) + cooling(p);
// Stake a near-total loss released (RevenuePool StakeReleased): no longer at risk, withdrawable now.
const released = (p) => big(p.released ?? 0);
const involved = (p) =>
  big(p.shares) > 0n || atStake(p) > 0n || released(p) > 0n || p.claimable > 0 || p.claimed > 0 || big(p.loss_taken) > 0n;

// The portfolio lists pool positions when the server indexes pools; else ask each pool.
async function loadPositions(portfolio, pools) {
  const byAddress = new Map(pools.map((p) => [p.address.toLowerCase(), p]));
  let rows = portfolio.pools;
  if (!Array.isArray(rows) && has("/api/v1/pools/{address}/positions/{holder}")) {
    rows = await mapLimited(pools, 4, (pool) => getJSON(`/api/v1/pools/${pool.address}/positions/${address}`).then((p) => ({ pool: pool.address, ...p })));
  }
  return (rows ?? [])
    .filter(involved)
    .map((position) => ({ pool: byAddress.get(String(position.pool).toLowerCase()), position }))
    .filter((x) => x.pool);
}

function table(id, head, rows, empty) {
  const t = root.querySelector(`#${id}`);
  t.innerHTML = t.querySelector("caption").outerHTML + `<thead><tr>${head}</tr></thead><tbody>${rows.join("") || `<tr><td colspan="12" class="muted">${esc(empty)}</td></tr>`}</tbody>`;
}

async function stressPositions() {
  const out = root.querySelector("#staker-stress-result");
  const button = root.querySelector("#staker-stress");
  button.disabled = true;
  out.textContent = "Running the H100 −40%/yr scenario over the indexed fleet…";
  try {
    const fleet = await indexedFleet();
    const h100 = (await getJSON("/api/v1/gpu-classes")).find((c) => c.name.startsWith("H100"));
    if (!h100) throw new Error("no H100 class is registered");
    const horizon = 60;
    const shock = classShock(h100.name, 4_000, horizon);
    const resp = await runStress(fleet, { scenarios: [], custom: [shock], horizon, covenantDscrBps: 12_500, maxLtvBps: 8_000 });
    const byNode = new Map((resp.results[0].nodes ?? []).map((n) => [n.node_id, n]));
    let loss = 0;
    const parts = [];
    for (const { pool, position } of positions) {
      const n = byNode.get(pool.node_id);
      if (!n || big(pool.total_staked) === 0n) continue;
      const mine = Number((big(n.waterfall.stakers) * atStake(position)) / big(pool.total_staked));
      loss += mine;
      parts.push(`${poolLabel(pool)}: ${usd(Math.round(mine))}${n.first_dscr_breach_month === null ? "" : ` (covenant breached in month ${n.first_dscr_breach_month})`}`);
    }
    out.innerHTML = `If ${esc(h100.name)} rental prices fall 40% a year, this address's stakes would absorb about <strong>${usd(Math.round(loss))}</strong> of losses over ${horizon} months${parts.length ? ": " + esc(parts.join("; ")) : ""} (its pro-rata part of each pool's stakers' loss).`;
  } catch (err) {
    out.textContent = `Could not run the scenario: ${err.reason ?? err.message}`;
  } finally {
    button.disabled = false;
  }
}

async function show(value) {
  address = value;
  root.querySelector("#staker-address").value = value;
  root.querySelector("#staker-body").hidden = false;
  root.querySelector("#staker-stress-result").textContent = "";
  await stakerView.refresh();
}

export const stakerView = {
  notice() {
    return poolsServed() ? "" : "This server does not serve pools yet (GET /api/v1/pools): positions cannot be shown; balances and reservations can.";
  },

  async init(panel) {
    root = panel;
    const input = root.querySelector("#staker-address");
    root.querySelector("#staker-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const v = input.value.trim();
      if (!ADDRESS.test(v)) {
        input.setCustomValidity("0x followed by 40 hex digits");
        input.reportValidity();
        return;
      }
      input.setCustomValidity("");
      history.replaceState(null, "", `#staker`);
      show(v);
    });
    input.addEventListener("input", () => input.setCustomValidity(""));
    const useWallet = root.querySelector("#staker-use-wallet");
    // The view follows the wallet while it shows the wallet's account: on accountsChanged
    // it shows the new one. An address typed in the form stays until another is asked for.
    const sync = (account, previous) => {
      useWallet.hidden = !account;
      const following = !address || (previous && address.toLowerCase() === previous.toLowerCase());
      if (account && following && account !== address) show(account);
    };
    useWallet.addEventListener("click", () => currentAccount() && show(currentAccount()));
    onAccount(sync);
    sync(currentAccount());
    root.querySelector("#staker-stress").addEventListener("click", stressPositions);
  },

  async refresh() {
    if (!address) return;
    const [portfolio, pools] = await Promise.all([getJSON(`/api/v1/portfolio/${address}`), loadPools()]);
    positions = pools ? await loadPositions(portfolio, pools) : [];
    const sum = (f) => positions.reduce((s, x) => s + (f(x.position, x.pool) ?? 0), 0);
    root.querySelector("#staker-kpis").innerHTML = [
      ["Address", short(portfolio.address), `as of block ${portfolio.as_of_block}`],
      ["tUSD", usd(portfolio.stablecoin), "wallet balance"],
      ["Staked", usd(sum((p, pool) => shareValue(pool, p.staked))), `${positions.length} pool${positions.length === 1 ? "" : "s"} · cooling ${usd(sum((p, pool) => shareValue(pool, cooling(p))))} (at share price)`],
      ["Claimable", usd(sum((p) => p.claimable)), `claimed ${usd(sum((p) => p.claimed))}`],
      ["Losses taken", usd(sum((p, pool) => shareValue(pool, p.loss_taken))), "staked shares lost (at share price)"],
    ]
      .map(([l, v, s]) => `<div class="kpi"><div class="label">${esc(l)}</div><div class="value">${esc(v)}</div><div class="sub">${esc(s)}</div></div>`)
      .join("");
    root.querySelector("#staker-stress").hidden = !positions.some((x) => atStake(x.position) > 0n);
    table(
      "staker-positions",
      '<th scope="col">pool</th><th class="num" scope="col">shares</th><th class="num" scope="col">staked</th><th class="num" scope="col">cooling</th><th class="num" scope="col" title="released by a near-total loss; withdrawable now">released</th><th class="num" scope="col">claimable</th><th class="num" scope="col">claimed</th><th class="num" scope="col">shares lost</th><th class="num" scope="col">pool DSCR</th><th class="num" scope="col">pool LTV</th><th scope="col">risk</th>',
      positions.map(
        ({ pool, position: p }) =>
          `<tr><td>${esc(poolLabel(pool))} <span class="muted mono">${short(pool.address)}</span></td><td class="num">${num(shares(p.shares), 2)}</td><td class="num">${num(shares(p.staked), 2)}</td><td class="num">${num(shares(cooling(p)), 2)}</td><td class="num">${num(shares(released(p)), 2)}</td><td class="num">${usd(p.claimable)}</td><td class="num">${usd(p.claimed)}</td><td class="num">${num(shares(p.loss_taken), 2)}</td><td class="num">${ratio(pool.risk.dscr_bps)}</td><td class="num">${pct(pool.risk.ltv_bps)}</td><td>${riskBadges(pool.risk)}</td></tr>`,
      ),
      poolsServed() ? "No pool position." : "Pools are not served by this API yet.",
    );
    table(
      "staker-capacity",
      '<th scope="col">token</th><th scope="col">class</th><th scope="col">window (UTC)</th><th class="num" scope="col">GPU-hours</th>',
      portfolio.capacity.map((h) => `<tr><td class="mono">${esc(h.token_id.slice(0, 10))}…</td><td>${esc(h.class_id ?? "—")}</td><td>${h.window_start ? day(h.window_start) : "—"}</td><td class="num">${num(h.amount)}</td></tr>`),
      "No capacity tokens.",
    );
    table(
      "staker-reservations",
      '<th scope="col">#</th><th scope="col">node</th><th scope="col">window (UTC)</th><th class="num" scope="col">GPU-hours</th><th class="num" scope="col">price</th><th scope="col">status</th><th class="num" scope="col">refund</th>',
      portfolio.reservations.map((r) => `<tr><td>${r.reservation_id}</td><td>#${r.node_id}</td><td>${day(r.window_start)}</td><td class="num">${num(r.amount)}</td><td class="num">${usd(r.price_per_gpu_hour)}</td><td>${esc(r.status)}</td><td class="num">${r.refund === null ? "—" : usd(r.refund)}</td></tr>`),
      "No reservations.",
    );
  },
};
