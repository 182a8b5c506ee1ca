// Market: the price index per class and what each delivery window offered, sold and redeemed;
// the secondary market's book (market_book.js) and trading from a wallet (market_trade.js).
import { getJSON } from "../api.js";
import { color, line, render } from "../charts.js";
import { loadClasses } from "../data.js";
import { day, esc, num, usd } from "../format.js";
import { marketBook } from "./market_book.js";
import { marketTrade } from "./market_trade.js";

let root;

async function all(path) {
  const rows = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await getJSON(`${path}${path.includes("?") ? "&" : "?"}limit=1000&offset=${offset}`);
    rows.push(...page);
    if (page.length < 1000 || rows.length >= 20_000) return rows;
  }
}

export const marketView = {
  async init(panel) {
    root = panel;
    const select = root.querySelector("#market-class");
    for (const c of await loadClasses()) {
      select.insertAdjacentHTML("beforeend", `<option value="${c.class_id}">${esc(c.name)}</option>`);
    }
    select.addEventListener("change", () => this.refresh());
    marketBook.init(root);
    marketTrade.init(root);
  },

  async refresh() {
    const classId = root.querySelector("#market-class").value;
    const filter = classId === "" ? "" : `?class_id=${classId}`;
    const [classes, prices, offers, reservations] = await Promise.all([
      loadClasses(),
      getJSON(`/api/v1/price-index${filter}${filter ? "&" : "?"}limit=1000`),
      all(`/api/v1/offers${filter}`),
      all("/api/v1/reservations"),
    ]);
    const names = new Map(classes.map((c) => [c.class_id, c.name]));
    const wanted = (row) => classId === "" || row.class_id === Number(classId);

    // Price index: one line per class over the delivery windows it traded.
    const windows = [...new Set(prices.map((p) => p.window_start))].sort((a, b) => a - b);
    const classIds = [...new Set(prices.map((p) => p.class_id))].sort((a, b) => a - b);
    render("market-price-chart", {
      type: "line",
      data: {
        labels: windows.map(day),
        datasets: classIds.map((cid, i) =>
          line(
            names.get(cid) ?? `class ${cid}`,
            windows.map((w) => {
              const p = prices.find((x) => x.class_id === cid && x.window_start === w);
              return p ? p.vwap_per_gpu_hour / 1e6 : null;
            }),
            i,
          ),
        ),
      },
      options: { scales: { y: { title: { display: true, text: "tUSD per GPU-hour" } }, x: { title: { display: true, text: "delivery window (UTC)" } } } },
    });

    // Capacity per (class, window): offered (what is or was for sale), sold, redeemed.
    const stats = new Map();
    const at = (cid, w) => {
      const key = `${cid}:${w}`;
      if (!stats.has(key)) stats.set(key, { class_id: cid, window_start: w, offered: 0, sold: 0, redeemed: 0, offers: 0 });
      return stats.get(key);
    };
    for (const o of offers.filter(wanted)) {
      const s = at(o.class_id, o.window_start);
      s.offered += o.status === "open" ? o.amount : o.sold;
      s.sold += o.sold;
      s.offers += 1;
    }
    for (const r of reservations.filter(wanted)) at(r.class_id, r.window_start).redeemed += r.amount;
    const rows = [...stats.values()].sort((a, b) => a.window_start - b.window_start || a.class_id - b.class_id);
    const label = (s) => (classId === "" && classIds.length !== 1 ? `${day(s.window_start)} ${names.get(s.class_id) ?? ""}` : day(s.window_start));
    render("market-capacity-chart", {
      type: "bar",
      data: {
        labels: rows.map(label),
        datasets: [
          { label: "offered", data: rows.map((s) => s.offered), backgroundColor: color(0) },
          { label: "sold", data: rows.map((s) => s.sold), backgroundColor: color(2) },
          { label: "redeemed", data: rows.map((s) => s.redeemed), backgroundColor: color(1) },
        ],
      },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "GPU-hours" } } } },
    });

    const price = (s) => prices.find((p) => p.class_id === s.class_id && p.window_start === s.window_start);
    const body = rows
      .slice()
      .reverse()
      .map((s) => {
        const p = price(s);
        return `<tr><td>${esc(names.get(s.class_id) ?? s.class_id)}</td><td>${day(s.window_start)}</td><td class="num">${s.offers}</td><td class="num">${num(s.offered)}</td><td class="num">${num(s.sold)}</td><td class="num">${num(s.redeemed)}</td><td class="num">${p ? usd(p.vwap_per_gpu_hour) : "—"}</td><td class="num">${p ? usd(p.volume) : "—"}</td></tr>`;
      });
    const table = root.querySelector("#market-windows");
    table.innerHTML =
      table.querySelector("caption").outerHTML +
      '<thead><tr><th scope="col">class</th><th scope="col">window (UTC)</th><th class="num" scope="col">offers</th><th class="num" scope="col">offered GPU-h</th><th class="num" scope="col">sold</th><th class="num" scope="col">redeemed</th><th class="num" scope="col">VWAP / GPU-h</th><th class="num" scope="col">volume</th></tr></thead>' +
      `<tbody>${body.join("") || '<tr><td colspan="8" class="muted">No capacity offered yet.</td></tr>'}</tbody>`;
    await marketBook.refresh(root, rows.slice().reverse(), names);
    await marketTrade.refresh();
  },
};
