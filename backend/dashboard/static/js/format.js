// Formatting: stablecoin base units (6 decimals), basis points, times, addresses.

export const USD = 1_000_000;
const nf0 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const nf2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

export function usd(base, { compact = false } = {}) {
  if (base === null || base === undefined) return "—";
  const v = Number(base) / USD;
  if (compact && Math.abs(v) >= 10_000) {
    return "$" + new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(v);
  }
  return "$" + (Math.abs(v) >= 1000 ? nf0.format(v) : nf2.format(v));
}

export function num(v, digits = 0) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return "—";
  return new Intl.NumberFormat("en-US", { maximumFractionDigits: digits }).format(Number(v));
}

export function pct(bps, digits = 1) {
  if (bps === null || bps === undefined) return "—";
  return `${(Number(bps) / 100).toFixed(digits)}%`;
}

// A coverage ratio in bps (12_500 = 1.25x); null = infinite (no debt service due).
export function ratio(bps) {
  if (bps === null || bps === undefined) return "∞";
  return `${(Number(bps) / 10_000).toFixed(2)}×`;
}

export function when(unixSeconds) {
  if (!unixSeconds) return "—";
  return new Date(unixSeconds * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

export function day(unixSeconds) {
  return new Date(unixSeconds * 1000).toISOString().slice(0, 16).replace("T", " ");
}

export function monthLabel(startTime, month) {
  const d = new Date(startTime * 1000);
  d.setUTCMonth(d.getUTCMonth() + month);
  return d.toISOString().slice(0, 7);
}

export function ago(unixSeconds) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
  if (s < 90) return `${s}s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export function short(address) {
  return address ? `${address.slice(0, 6)}…${address.slice(-4)}` : "—";
}

// Escape text for HTML built with template strings.
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function badge(text, kind) {
  return `<span class="badge ${kind}">${esc(text)}</span>`;
}
