// Market: the secondary market's order book for one capacity window (depth by price
// level, asks above bids) and its last trades, from /api/v1/market. Hidden where the
// server has no market routes (an older API), so the page never asks for them.
import { getJSON, has } from "../api.js";
import { day, esc, num, short, usd, when } from "../format.js";

let info = null; // GET /api/v1/market: the capacity token's address, read once
let last = { root: null, windows: [], names: new Map() };

function tokenId(classId, windowStart) {
  return ((BigInt(classId) << 64n) | BigInt(windowStart)).toString();
}

function table(el, head, rows, empty) {
  el.innerHTML =
    el.querySelector("caption").outerHTML +
    `<thead><tr>${head.map(([h, cls]) => `<th scope="col" class="${cls ?? ""}">${h}</th>`).join("")}</tr></thead>` +
    `<tbody>${rows.join("") || `<tr><td colspan="${head.length}" class="muted">${empty}</td></tr>`}</tbody>`;
}

export const marketBook = {
  init(root) {
    root.querySelector("#market-instrument").addEventListener("change", () => this.refresh(last.root, last.windows, last.names));
  },

  // windows: [{class_id, window_start}], newest first; names: class id -> name
  async refresh(root, windows, names) {
    last = { root, windows, names };
    const card = root.querySelector("#market-book-card");
    card.hidden = !has("/api/v1/market/book");
    if (card.hidden) return;
    if (info === null) info = await getJSON("/api/v1/market");
    const select = root.querySelector("#market-instrument");
    const chosen = select.value;
    const options = windows.map((w) => [tokenId(w.class_id, w.window_start), `${names.get(w.class_id) ?? `class ${w.class_id}`} · ${day(w.window_start)}`]);
    select.innerHTML = options.map(([id, label]) => `<option value="${id}">${esc(label)}</option>`).join("");
    if (options.some(([id]) => id === chosen)) select.value = chosen;
    if (!select.value) return;
    const query = `asset=${info.capacity_token}&token_id=${select.value}`;
    const [book, trades] = await Promise.all([
      getJSON(`/api/v1/market/book?${query}`),
      getJSON(`/api/v1/market/trades?${query}&limit=20`),
    ]);
    // Asks highest first down to the best, then bids from the best down: the spread in the middle.
    const level = (side) => (l) => `<tr class="${side}"><td>${side}</td><td class="num">${usd(l.price)}</td><td class="num">${num(l.amount)}</td><td class="num">${l.orders}</td></tr>`;
    table(
      root.querySelector("#market-depth"),
      [["side"], ["price / GPU-h", "num"], ["GPU-hours", "num"], ["orders", "num"]],
      [...book.asks.slice().reverse().map(level("ask")), ...book.bids.map(level("bid"))],
      "No open orders for this window.",
    );
    table(
      root.querySelector("#market-trades"),
      [["time (UTC)"], ["price / GPU-h", "num"], ["GPU-hours", "num"], ["paid", "num"], ["taker"]],
      trades.map((t) => `<tr><td>${when(t.block_timestamp)}</td><td class="num">${usd(t.price)}</td><td class="num">${num(t.amount)}</td><td class="num">${usd(t.quote)}</td><td class="mono">${esc(short(t.taker))}</td></tr>`),
      "No trades yet.",
    );
  },
};
