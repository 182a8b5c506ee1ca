// Chart.js helpers: one chart per canvas, updated in place so refreshes do not flicker.
// Every canvas carries data-points (how many values it plots): a reader of the DOM
// (a test, an accessibility tool) can tell an empty chart from a drawn one.

export const PALETTE = ["#0a58ca", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#1098ad", "#e67700", "#5c940d", "#495057"];
const charts = new Map();

export function color(i) {
  return PALETTE[i % PALETTE.length];
}

export function chartsAvailable() {
  return typeof window.Chart === "function";
}

export function render(canvasId, config) {
  const canvas = document.getElementById(canvasId);
  if (!canvas || !chartsAvailable()) return null;
  const points = config.data.datasets
    .filter((d) => !d.reference)
    .reduce((n, d) => n + d.data.filter((v) => v !== null && v !== undefined).length, 0);
  canvas.dataset.points = String(points);
  const card = canvas.closest(".card");
  const empty = card?.querySelector(".empty");
  if (empty) empty.hidden = points > 0;
  canvas.parentElement.hidden = points === 0;
  let chart = charts.get(canvasId);
  if (chart && chart.config.type !== config.type) {
    chart.destroy();
    chart = null;
  }
  if (!chart) {
    config.options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      ...config.options,
    };
    chart = new window.Chart(canvas, config);
    charts.set(canvasId, chart);
  } else {
    chart.data = config.data;
    if (config.options) Object.assign(chart.options, config.options);
    chart.update("none");
  }
  return chart;
}

export function line(label, data, i, extra = {}) {
  return { label, data, borderColor: color(i), backgroundColor: color(i), pointRadius: 3, borderWidth: 2, tension: 0.2, spanGaps: true, ...extra };
}

// A dashed horizontal reference line (covenant, limit); not counted as data.
export function reference(label, value, length, colour = "#cf222e") {
  return { label, data: Array(length).fill(value), borderColor: colour, borderDash: [6, 4], pointRadius: 0, borderWidth: 2, fill: false, reference: true };
}
