// Market: the price index per class and source (primary sales, secondary trades, both) and
// what each delivery window offered, sold and redeemed; the secondary market's book
// (market_book.js) and trading from a wallet (market_trade.js).
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

    // Price index: per class over the delivery windows it traded, a line per source:
    // primary sales (solid), secondary trades (dashed) and, where there are secondary
    // trades, both combined (dotted). Wash trades are in none (the API leaves them out).
    const windows = [...new Set(prices.map((p) => p.window_start))].sort((a, b) => a - b);
    const classIds = [...new Set(prices.map((p) => p.class_id))].sort((a, b) => a - b);
    const datasets = [];
    classIds.forEach((cid, i) => {
      const name = names.get(cid) ?? `class ${cid}`;
      const series = (source) =>
        windows.map((w) => {
          const p = prices.find((x) => x.class_id === cid && x.window_start === w);
          const vwap = p?.[source]?.vwap_per_gpu_hour;
          return vwap === null || vwap === undefined ? null : vwap / 1e6;
        });
      datasets.push(line(`${name} · primary`, series("primary"), i));
      const secondary = series("secondary");
      if (secondary.some((v) => v !== null)) {
        datasets.push(line(`${name} · secondary`, secondary, i, { borderDash: [6, 4] }));
        datasets.push(line(`${name} · combined`, series("combined"), i, { borderDash: [2, 3], borderWidth: 1 }));
      }
    });
    render("market-price-chart", {
      type: "line",
      data: { labels: windows.map(day), datasets },
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
        const cell = (source, field = "vwap_per_gpu_hour") => `<td class="num" data-source="${source}">${usd(p?.[source]?.[field])}</td>`;
        const excluded = p?.excluded?.trades ? `<span title="${esc(`${num(p.excluded.gpu_hours)} GPU-h, ${usd(p.excluded.volume)}`)}">${p.excluded.trades}</span>` : "0";
        return `<tr><td>${esc(names.get(s.class_id) ?? s.class_id)}</td><td>${day(s.window_start)}</td><td class="num">${s.offers}</td><td class="num">${num(s.offered)}</td><td class="num">${num(s.sold)}</td><td class="num">${num(s.redeemed)}</td>${cell("primary")}${cell("secondary")}${cell("combined")}${cell("combined", "last_per_gpu_hour")}${cell("combined", "twap_per_gpu_hour")}<td class="num">${usd(p?.combined?.volume)}</td><td class="num">${excluded}</td></tr>`;
      });
    const table = root.querySelector("#market-windows");
    table.innerHTML =
      table.querySelector("caption").outerHTML +
      '<thead><tr><th scope="col">class</th><th scope="col">window (UTC)</th><th class="num" scope="col">offers</th><th class="num" scope="col">offered GPU-h</th><th class="num" scope="col">sold</th><th class="num" scope="col">redeemed</th>' +
      '<th class="num" scope="col">VWAP primary</th><th class="num" scope="col">VWAP secondary</th><th class="num" scope="col">VWAP combined</th><th class="num" scope="col">last</th><th class="num" scope="col">TWAP</th><th class="num" scope="col">volume</th><th class="num" scope="col" title="self-trades and wash trades, left out of every price">wash excl.</th></tr></thead>' +
      `<tbody>${body.join("") || '<tr><td colspan="13" class="muted">No capacity offered yet.</td></tr>'}</tbody>`;
    await marketBook.refresh(root, rows.slice().reverse(), names);
    await marketTrade.refresh();
  },
};
