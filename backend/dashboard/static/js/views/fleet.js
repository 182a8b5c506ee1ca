// Fleet: where the GPUs are (class x region), what they deliver, per node and over time.
import { getJSON, mapLimited } from "../api.js";
import { line, render, color } from "../charts.js";
import { efficiency, energyKwh, loadClasses, loadFleetMetrics, loadNodeMetrics, loadNodes, nodeMetricsServed } from "../data.js";
import { ago, badge, esc, num, pct, usd } from "../format.js";

let root;
let selected = null;
let latest = new Map(); // node id -> latest metric row
let ticks = 0;

const STATUS = { active: "ok", jailed: "bad", exiting: "warn", exited: "warn" };

function kpi(label, value, sub = "") {
  return `<div class="kpi"><div class="label">${esc(label)}</div><div class="value">${esc(value)}</div><div class="sub">${esc(sub)}</div></div>`;
}

function renderMap(nodes, classes) {
  const live = nodes.filter((n) => n.status !== "exited");
  const regions = [...new Set(live.map((n) => n.region || "unknown"))].sort();
  const byClass = new Map(classes.map((c) => [c.class_id, c.name]));
  const classIds = [...new Set(live.map((n) => n.class_id))].sort((a, b) => a - b);
  const cell = (cid, region) => live.filter((n) => n.class_id === cid && (n.region || "unknown") === region);
  const maxGpus = Math.max(1, ...classIds.flatMap((c) => regions.map((r) => cell(c, r).reduce((s, n) => s + n.gpu_count, 0))));
  let html = `<thead><tr><th scope="col">class \\ region</th>${regions.map((r) => `<th scope="col">${esc(r)}</th>`).join("")}</tr></thead><tbody>`;
  for (const cid of classIds) {
    html += `<tr><th scope="row">${esc(byClass.get(cid) ?? cid)}</th>`;
    for (const region of regions) {
      const here = cell(cid, region);
      const gpus = here.reduce((s, n) => s + n.gpu_count, 0);
      const utils = here.map((n) => latest.get(n.node_id)?.utilization_bps).filter((u) => u !== undefined && u !== null);
      const util = utils.length ? utils.reduce((a, b) => a + b, 0) / utils.length : null;
      const alpha = gpus ? 0.12 + 0.5 * (gpus / maxGpus) : 0;
      html += gpus
        ? `<td class="cell" style="background: rgba(10,88,202,${alpha.toFixed(2)})">${num(gpus)} GPUs<small>${here.length} node${here.length === 1 ? "" : "s"}${util === null ? "" : ` · ${pct(util, 0)} busy`}</small></td>`
        : `<td class="cell muted">—</td>`;
    }
    html += "</tr>";
  }
  root.querySelector("#fleet-map").innerHTML =
    root.querySelector("#fleet-map caption").outerHTML + html + "</tbody>";
  render("fleet-map-chart", {
    type: "bar",
    data: {
      labels: regions,
      datasets: classIds.map((cid, i) => ({
        label: byClass.get(cid) ?? `class ${cid}`,
        data: regions.map((r) => cell(cid, r).reduce((s, n) => s + n.gpu_count, 0)),
        backgroundColor: color(i),
      })),
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "GPUs" } } } },
  });
}

function renderNodes(nodes, classes) {
  const byClass = new Map(classes.map((c) => [c.class_id, c.name]));
  const metrics = nodeMetricsServed();
  const head = `<thead><tr><th scope="col">node</th><th scope="col">class</th><th scope="col">region</th><th class="num" scope="col">GPUs</th><th scope="col">status</th><th class="num" scope="col">bond</th>${
    metrics ? '<th class="num" scope="col">utilization</th><th class="num" scope="col">uptime</th><th class="num" scope="col">GPU-h / kWh</th><th class="num" scope="col">epoch</th>' : ""
  }<th scope="col"><span class="sr-only">details</span></th></tr></thead>`;
  const rows = nodes.map((n) => {
    const m = latest.get(n.node_id);
    const eff = efficiency(m);
    return `<tr data-node="${n.node_id}" class="${n.node_id === selected ? "selected" : ""}"><td>#${n.node_id}</td><td>${esc(byClass.get(n.class_id) ?? n.class_id)}</td><td>${esc(n.region)}</td><td class="num">${n.gpu_count}</td><td>${badge(n.status, STATUS[n.status] ?? "warn")}</td><td class="num">${usd(n.bonded)}</td>${
      metrics ? `<td class="num">${pct(m?.utilization_bps)}</td><td class="num">${pct(m?.uptime_bps)}</td><td class="num">${eff === null ? "—" : num(eff, 1)}</td><td class="num">${m?.epoch ?? "—"}</td>` : ""
    }<td>${metrics ? `<button type="button" class="link" data-show="${n.node_id}">history</button>` : ""}</td></tr>`;
  });
  root.querySelector("#fleet-nodes").innerHTML =
    root.querySelector("#fleet-nodes caption").outerHTML + head + `<tbody>${rows.join("") || '<tr><td colspan="10" class="muted">No node has been registered yet.</td></tr>'}</tbody>`;
}

async function renderSelected() {
  const card = root.querySelector("#fleet-node-card");
  if (selected === null || !nodeMetricsServed()) {
    card.hidden = true;
    return;
  }
  const rows = await loadNodeMetrics(selected);
  card.hidden = false;
  root.querySelector("#fleet-node-title").textContent = `Node #${selected}: attested metrics per epoch`;
  render("fleet-node-chart", {
    type: "line",
    data: {
      labels: rows.map((r) => r.epoch),
      datasets: [
        line("utilization %", rows.map((r) => (r.utilization_bps === null ? null : r.utilization_bps / 100)), 0),
        line("uptime %", rows.map((r) => (r.uptime_bps === null ? null : r.uptime_bps / 100)), 1),
        line("GPU-hours / kWh", rows.map((r) => efficiency(r)), 2, { yAxisID: "eff" }),
      ],
    },
    options: {
      scales: {
        y: { min: 0, max: 100, title: { display: true, text: "%" } },
        eff: { position: "right", title: { display: true, text: "GPU-h / kWh" }, grid: { drawOnChartArea: false } },
        x: { title: { display: true, text: "epoch" } },
      },
    },
  });
}

async function refreshLatest(nodes) {
  if (!nodeMetricsServed()) return;
  const visible = nodes.filter((n) => n.status !== "exited").slice(0, 24);
  const rows = await mapLimited(visible, 4, (n) => loadNodeMetrics(n.node_id, 1).catch(() => []));
  latest = new Map(visible.map((n, i) => [n.node_id, rows[i].at(-1)]).filter(([, m]) => m));
}

export const fleetView = {
  async init(panel) {
    root = panel;
    root.querySelector("#fleet-nodes").addEventListener("click", (e) => {
      const id = e.target.closest("[data-show]")?.dataset.show;
      if (id === undefined) return;
      selected = Number(id);
      for (const tr of root.querySelectorAll("#fleet-nodes tr[data-node]")) {
        tr.classList.toggle("selected", Number(tr.dataset.node) === selected);
      }
      renderSelected();
    });
  },

  async refresh() {
    const [classes, nodes, epochs] = await Promise.all([
      loadClasses(),
      loadNodes(),
      getJSON("/api/v1/epochs?limit=60"),
    ]);
    if (ticks++ % 3 === 0) await refreshLatest(nodes);
    const active = nodes.filter((n) => n.status === "active");
    const gpus = active.reduce((s, n) => s + n.gpu_count, 0);
    const regions = new Set(active.map((n) => n.region));
    const newest = epochs[0];
    const lastUtil = [...latest.values()].map((m) => m.utilization_bps).filter((u) => u !== null); // unknown: left out
    root.querySelector("#fleet-kpis").innerHTML = [
      kpi("Active nodes", `${active.length} / ${nodes.length}`, "active / registered"),
      kpi("GPUs (active)", num(gpus), `${new Set(active.map((n) => n.class_id)).size} classes · ${regions.size} regions`),
      kpi("Bonded", usd(nodes.reduce((s, n) => s + n.bonded, 0), { compact: true }), "operator bonds"),
      kpi("Newest epoch", newest ? `#${newest.epoch}` : "—", newest ? `attested ${ago(newest.attested_at)}` : "none attested yet"),
      kpi("GPU-hours, last epoch", newest ? num(newest.total_milli_gpu_hours / 1000, 1) : "—", newest ? `${num(newest.node_count)} nodes reported` : ""),
      kpi("Fleet utilization", lastUtil.length ? pct(lastUtil.reduce((a, b) => a + b, 0) / lastUtil.length) : "—", "latest epoch, mean of nodes whose utilization is known"),
    ].join("");
    renderMap(nodes, classes);
    renderNodes(nodes, classes);

    const ordered = [...epochs].reverse();
    render("fleet-epochs-chart", {
      type: "line",
      data: {
        labels: ordered.map((e) => e.epoch),
        datasets: [
          line("GPU-hours delivered", ordered.map((e) => e.total_milli_gpu_hours / 1000), 0),
          line("energy (kWh)", ordered.map((e) => energyKwh(e, "total_energy_joules", "total_energy_wh")), 1, { yAxisID: "energy" }),
        ],
      },
      options: {
        scales: {
          y: { beginAtZero: true, title: { display: true, text: "GPU-hours" } },
          energy: { position: "right", beginAtZero: true, title: { display: true, text: "kWh" }, grid: { drawOnChartArea: false } },
          x: { title: { display: true, text: "epoch" } },
        },
      },
    });

    const perClass = await loadFleetMetrics(classes);
    const classCard = root.querySelector("#fleet-class-chart").closest(".card");
    classCard.querySelector(".empty").textContent =
      perClass === null
        ? "Per-class metrics are not served by this API yet (GET /api/v1/fleet/metrics)."
        : "No attested node leaves have been ingested yet.";
    if (perClass !== null) {
      const epochsSeen = [...new Set(perClass.map((r) => r.epoch))];
      const names = [...new Set(perClass.map((r) => r.cls))];
      const series = (name, field) =>
        epochsSeen.map((ep) => {
          const r = perClass.find((x) => x.epoch === ep && x.cls === name);
          return r && r[field] !== null ? (field === "efficiency" ? r[field] : r[field] / 100) : null;
        });
      render("fleet-class-chart", {
        type: "line",
        data: {
          labels: epochsSeen,
          datasets: names.flatMap((name, i) => [
            line(`${name} utilization %`, series(name, "utilization_bps"), i),
            line(`${name} uptime %`, series(name, "uptime_bps"), i, { borderDash: [4, 3] }),
            line(`${name} GPU-h/kWh`, series(name, "efficiency"), i, { yAxisID: "eff", borderDash: [1, 3] }),
          ]),
        },
        options: {
          // One legend entry per class (its utilization line, named by the class); the
          // line styles are said once above the chart, not three times per class.
          plugins: {
            legend: {
              labels: {
                filter: (item) => item.datasetIndex % 3 === 0,
                generateLabels: (chart) =>
                  window.Chart.defaults.plugins.legend.labels.generateLabels(chart).map((item) => ({
                    ...item,
                    text: names[Math.floor(item.datasetIndex / 3)] ?? item.text,
                  })),
              },
            },
          },
          scales: {
            y: { min: 0, max: 100, title: { display: true, text: "%" } },
            eff: { position: "right", title: { display: true, text: "GPU-h / kWh" }, grid: { drawOnChartArea: false } },
            x: { title: { display: true, text: "epoch" } },
          },
        },
      });
    } else {
      root.querySelector("#fleet-class-chart").parentElement.hidden = true;
      classCard.querySelector(".empty").hidden = false;
    }
    if (selected === null && nodeMetricsServed() && nodes.length) selected = nodes[0].node_id;
    await renderSelected();
  },
};
