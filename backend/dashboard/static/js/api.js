// The dashboard's only door to data: the public /api/v1 routes, as any client sees them.

export class ApiError extends Error {
  constructor(status, code, reason) {
    super(`${status} ${code}: ${reason}`);
    this.status = status;
    this.code = code;
    this.reason = reason;
  }
}

async function parse(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    throw new ApiError(resp.status, body?.code ?? "HttpError", body?.reason ?? resp.statusText);
  }
  return body;
}

export async function getJSON(path) {
  return parse(await fetch(path, { headers: { accept: "application/json" } }));
}

export async function postJSON(path, body) {
  return parse(
    await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(body),
    }),
  );
}

// Which routes this server has: read once from its OpenAPI document, so the page asks
// only for what exists (routes still being built are shown as "not served yet", and a
// missing route never turns into a failed request).
let routes = null;

export async function loadRoutes() {
  if (routes === null) {
    const doc = await getJSON("/openapi.json");
    routes = new Set(Object.keys(doc.paths ?? {}));
  }
  return routes;
}

export function has(path) {
  return routes !== null && routes.has(path);
}

// A list from an endpoint that may wrap it ({items: [...]}, {pools: [...]}) or not.
export function asList(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const key of [...keys, "items", "data", "results"]) {
    if (Array.isArray(body?.[key])) return body[key];
  }
  return [];
}

// Run `fn` over `items`, at most `limit` at a time (keeps the API's pool unflooded).
export async function mapLimited(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
