// Market: the secondary market's order book for one instrument (a capacity window's
// GPU-hours, or a pool's shares): depth by price level, asks above bids, and its last
// trades, from /api/v1/market. Hidden where the server has no market routes (an older
// API), so the page never asks for them. The chosen instrument is also what the trade
// card (market_trade.js) places orders on.
import { asList, getJSON, has } from "../api.js";
import { poolLabel } from "../data.js";
import { day, esc, num, short, usd, when } from "../format.js";

const SHARE_DECIMALS = 18;
let info = null; // GET /api/v1/market: the market's domain, types and tokens, read once
let last = { root: null, windows: [], names: new Map() };
let instruments = new Map(); // option value -> instrument
const changeListeners = new Set();

function tokenId(classId, windowStart) {
  return ((BigInt(classId) << 64n) | BigInt(windowStart)).toString();
}

function table(el, head, rows, empty) {
  el.innerHTML =
    el.querySelector("caption").outerHTML +
    `<thead><tr>${head.map(([h, cls]) => `<th scope="col" class="${cls ?? ""}">${h}</th>`).join("")}</tr></thead>` +
    `<tbody>${rows.join("") || `<tr><td colspan="${head.length}" class="muted">${empty}</td></tr>`}</tbody>`;
}

// Prices come per base unit: a pool share's is 1e-18 of a share.
export function unitPrice(instrument, price) {
  return usd(Number(price) * 10 ** instrument.decimals);
}

export function units(instrument, amount) {
  return instrument.decimals ? num(Number(amount) / 10 ** instrument.decimals, 4) : num(amount);
}

async function loadPools() {
  if (!has("/api/v1/pools")) return [];
  return asList(await getJSON("/api/v1/pools?limit=1000"), "pools");
}

export const marketBook = {
  init(root) {
    root.querySelector("#market-instrument").addEventListener("change", async () => {
      await this.refresh(last.root, last.windows, last.names);
      for (const fn of changeListeners) fn(this.instrument());
    });
  },

  // GET /api/v1/market (null until the book has loaded once).
  info() {
    return info;
  },

  // {asset, tokenId, decimals, unit, label} of the chosen instrument, or null.
  instrument() {
    const select = last.root?.querySelector("#market-instrument");
    return (select && instruments.get(select.value)) ?? null;
  },

  onChange(fn) {
    changeListeners.add(fn);
  },

  // The instrument of (asset, token id) if the book lists it, else null.
  describe(asset, id) {
    return [...instruments.values()].find((i) => i.asset.toLowerCase() === asset.toLowerCase() && i.tokenId === id) ?? null;
  },

  // Again, as last refreshed (after an order of this page's).
  reload() {
    return last.root ? this.refresh(last.root, last.windows, last.names) : Promise.resolve();
  },

  // windows: [{class_id, window_start}], newest first; names: class id -> name
  async refresh(root, windows, names) {
    last = { root, windows, names };
    const card = root.querySelector("#market-book-card");
    card.hidden = !has("/api/v1/market/book");
    if (card.hidden) return;
    if (info === null) info = await getJSON("/api/v1/market");
    const pools = await loadPools();
    const next = new Map();
    for (const w of windows) {
      const label = `${names.get(w.class_id) ?? `class ${w.class_id}`} · ${day(w.window_start)}`;
      next.set(tokenId(w.class_id, w.window_start), { asset: info.capacity_token, tokenId: tokenId(w.class_id, w.window_start), decimals: 0, unit: "GPU-hour", group: "GPU-hours of", label });
    }
    for (const p of pools) {
      next.set(p.address, { asset: p.address, tokenId: "0", decimals: SHARE_DECIMALS, unit: "share", group: "Shares of", label: poolLabel(p) });
    }
    instruments = next;
    const select = root.querySelector("#market-instrument");
    const chosen = select.value;
    const groups = ["GPU-hours of", "Shares of"].map((group) => {
      const options = [...next].filter(([, i]) => i.group === group);
      return options.length ? `<optgroup label="${group}">${options.map(([v, i]) => `<option value="${v}">${esc(i.label)}</option>`).join("")}</optgroup>` : "";
    });
    select.innerHTML = groups.join("");
    if (next.has(chosen)) select.value = chosen;
    const instrument = this.instrument();
    if (!instrument) return;
    if (chosen !== select.value) for (const fn of changeListeners) fn(instrument);
    const query = `asset=${instrument.asset}&token_id=${instrument.tokenId}`;
    const [book, trades] = await Promise.all([
      getJSON(`/api/v1/market/book?${query}`),
      getJSON(`/api/v1/market/trades?${query}&limit=20`),
    ]);
    const unit = instrument.unit === "share" ? "share" : "GPU-h";
    const amounts = instrument.unit === "share" ? "shares" : "GPU-hours";
    // Asks highest first down to the best, then bids from the best down: the spread in the middle.
    const level = (side) => (l) => `<tr class="${side}"><td>${side}</td><td class="num">${unitPrice(instrument, l.price)}</td><td class="num">${units(instrument, l.amount)}</td><td class="num">${l.orders}</td></tr>`;
    table(
      root.querySelector("#market-depth"),
      [["side"], [`price / ${unit}`, "num"], [amounts, "num"], ["orders", "num"]],
      [...book.asks.slice().reverse().map(level("ask")), ...book.bids.map(level("bid"))],
      "No open orders for this instrument.",
    );
    table(
      root.querySelector("#market-trades"),
      [["time (UTC)"], [`price / ${unit}`, "num"], [amounts, "num"], ["paid", "num"], ["taker"]],
      trades.map((t) => `<tr><td>${when(t.block_timestamp)}</td><td class="num">${unitPrice(instrument, t.price)}</td><td class="num">${units(instrument, t.amount)}</td><td class="num">${usd(t.quote)}</td><td class="mono">${esc(short(t.taker))}</td></tr>`),
      "No trades yet.",
    );
  },
};
