// Market: trading from a browser wallet on the book's chosen instrument. A limit order is
// signed (eth_signTypedData_v4, the Market's EIP-712 domain and Order type) and posted to
// the book; the approvals a sell or a bid needs are given without gas (GPU-hours: a relayed
// CapacityToken.setApprovalForAll forward request; the stablecoin or pool shares: an
// EIP-2612 permit the relayer submits); a cancel is the maker's own Market.cancel, signed
// as a forward request and relayed. What the API refuses is shown with its code and
// reason, and a request declined in the wallet is said to be declined.
import { getJSON, has, postJSON } from "../api.js";
import { esc, pct, short, when } from "../format.js";
import { USD_DECIMALS, formatUnits, orderTerms } from "../order_terms.js";
import { cancelCalldata, forwardTypedData, orderTypedData, permitTypedData, setApprovalForAllCalldata } from "../signing.js";
import { currentAccount, explain, hasWallet, onAccount, requireWallet, signTypedData } from "../wallet.js";
import { marketBook, unitPrice, units } from "./market_book.js";

const UNLIMITED = ((1n << 256n) - 1n).toString(); // allowances as the CLI gives them
const FORWARD_GAS = 500_000; // as gpucap/signing.py sign_request
const DEADLINE_SECONDS = 600; // as gpucap/actions.py DEFAULT_DEADLINE_SECONDS
const POLL_MS = 700;
const FOLLOW_MS = 120_000;
const BPS = 10_000n;

let root = null;
let busy = false;
let approvals = null; // GET /api/v1/market/approvals/{account} for the instrument shown
const notes = new Map(); // order hash -> what this page did with it (a relayed cancel)

const $ = (id) => root.querySelector(`#${id}`);

function say(text, kind = "") {
  const box = $("market-trade-message");
  box.hidden = !text;
  box.className = `trade-message ${kind}`.trim();
  box.textContent = text ?? "";
}

function side() {
  return root.querySelector('input[name="market-order-side"]:checked').value;
}

// One wallet request at a time: the buttons wait, so a second signature is never asked
// while the first is open in the wallet.
async function exclusive(fn) {
  if (busy) return;
  busy = true;
  for (const b of root.querySelectorAll("#market-trade-card button")) b.disabled = true;
  try {
    await fn();
  } catch (err) {
    say(explain(err), "error");
  } finally {
    busy = false;
    for (const b of root.querySelectorAll("#market-trade-card button")) b.disabled = false;
  }
}

// ------------------------------------------------------------------ relaying

// A forward request of `data` to `to` from the connected account, signed and posted.
async function relay(to, data) {
  const account = currentAccount();
  const [forwarder, nonces] = await Promise.all([getJSON("/api/v1/forwarder"), getJSON(`/api/v1/accounts/${account}/nonces`)]);
  const request = { from: account, to, value: 0, gas: FORWARD_GAS, nonce: nonces.forwarder, deadline: nonces.chain_time + DEADLINE_SECONDS, data };
  const signature = await signTypedData(forwardTypedData(forwarder, request));
  return postJSON("/api/v1/forward", { ...request, signature });
}

// Polls an accepted action (its status_url) to its end: the action, or an Error saying
// how it failed or that it is slow.
async function follow(accepted, what) {
  const actionId = accepted.action_id;
  const path = new URL(accepted.status_url, location.href).pathname; // this origin (behind a proxy too)
  const until = Date.now() + FOLLOW_MS;
  for (;;) {
    const action = await getJSON(path);
    if (action.status === "confirmed") return action;
    if (action.status === "failed") throw new Error(`${what} failed on-chain (${action.error_code ?? "error"}): ${action.error ?? "no reason given"}`);
    if (Date.now() > until) throw new Error(`${what} is still ${action.status} after ${FOLLOW_MS / 1000}s (action ${actionId})`);
    say(`${what}: ${action.status}…`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

// ------------------------------------------------------------------ approvals

// What an order on this side of `instrument` draws on, and the units it needs (0n: the
// form does not say yet, so any approval at all will do to show it in place).
function needs(instrument, sell, terms, feeBps) {
  if (sell && instrument.decimals === 0) return { kind: "capacity", what: "your GPU-hours" };
  if (sell) return { kind: "permit", token: instrument.asset, what: `your shares of ${instrument.label}`, units: terms?.amount ?? 0n };
  const quote = terms?.quote ?? 0n;
  return { kind: "permit", token: approvals?.tokens.find((t) => t.kind === "stablecoin")?.token, what: "your tUSD", units: quote + (quote * feeBps) / BPS };
}

// The approval `need` lacks, null when in place, undefined when not read yet (another
// instrument's approvals are loaded).
function missing(need) {
  if (!approvals) return undefined;
  if (need.kind === "capacity") return approvals.capacity_approved ? null : need;
  const token = approvals.tokens.find((t) => t.token.toLowerCase() === need.token?.toLowerCase());
  if (!token) return undefined;
  const allowance = BigInt(token.allowance);
  return allowance === 0n || allowance < need.units ? { ...need, permit: token } : null;
}

async function loadApprovals(instrument) {
  const account = currentAccount();
  const pool = instrument.decimals ? `?pool=${instrument.asset}` : "";
  approvals = await getJSON(`/api/v1/market/approvals/${account}${pool}`);
}

function showApprovals() {
  const instrument = marketBook.instrument();
  const text = $("market-approvals");
  const button = $("market-approve");
  if (!instrument || !approvals || !currentAccount()) {
    text.textContent = "";
    button.hidden = true;
    return null;
  }
  const sell = side() === "sell";
  const need = needs(instrument, sell, formTerms(), BigInt(marketBook.info()?.maker_fee_bps ?? 0));
  const gap = missing(need);
  text.textContent =
    gap === undefined
      ? ""
      : gap
        ? `To ${sell ? "sell" : "bid"}, the market needs your approval to move ${need.what} when an order fills.`
        : `Approved: the market may move ${need.what} when your ${sell ? "sell" : "bid"} fills.`;
  button.hidden = !gap;
  return gap;
}

async function approve() {
  await requireWallet(); // on gpucap's chain before anything is asked
  const instrument = marketBook.instrument();
  await loadApprovals(instrument);
  const gap = showApprovals();
  if (!gap) return;
  const account = currentAccount();
  if (gap.kind === "capacity") {
    say("Sign the approval of your GPU-hours in your wallet…");
    const accepted = await relay(approvals.capacity_token, setApprovalForAllCalldata(approvals.spender, true));
    await follow(accepted, "Approval of your GPU-hours");
  } else {
    say(`Sign the permit for ${gap.what} in your wallet…`);
    const permit = { owner: account, spender: approvals.spender, value: UNLIMITED, nonce: gap.permit.nonce, deadline: approvals.chain_time + DEADLINE_SECONDS };
    const signature = await signTypedData(permitTypedData(gap.permit, approvals.types, permit));
    const accepted = await postJSON("/api/v1/market/permits", { token: gap.permit.token, ...permit, signature });
    if (accepted.action_id !== null) await follow(accepted, `Permit for ${gap.what}`);
  }
  await loadApprovals(instrument);
  showApprovals();
  say(`Approved: the market may now move ${gap.what}.`, "ok");
}

// ------------------------------------------------------------------ orders

// {amount, quote} from the form, or null while it does not describe an order.
function formTerms() {
  const instrument = marketBook.instrument();
  if (!instrument) return null;
  try {
    return orderTerms({ sell: side() === "sell", amount: $("market-order-amount").value, price: $("market-order-price").value, decimals: instrument.decimals });
  } catch {
    return null;
  }
}

function showTerms() {
  const instrument = marketBook.instrument();
  const box = $("market-order-terms");
  if (!instrument) {
    box.textContent = "";
    return;
  }
  $("market-order-amount-label").textContent = instrument.decimals ? "shares" : "GPU-hours";
  $("market-order-price-label").textContent = `tUSD per ${instrument.unit}`;
  const amount = $("market-order-amount").value.trim();
  const price = $("market-order-price").value.trim();
  if (!amount || !price) {
    box.textContent = `${instrument.group} ${instrument.label}.`;
    return;
  }
  const sell = side() === "sell";
  try {
    const terms = orderTerms({ sell, amount, price, decimals: instrument.decimals });
    const fee = marketBook.info()?.maker_fee_bps ?? 0;
    box.textContent =
      `${sell ? "Sell" : "Buy"} ${formatUnits(terms.amount, instrument.decimals)} ${instrument.decimals ? "shares" : "GPU-hours"} of ${instrument.label} ` +
      `for ${formatUnits(terms.quote, USD_DECIMALS)} tUSD in all; maker fee ${pct(fee, 2)} on fills.`;
  } catch (err) {
    box.textContent = err.message;
  }
}

async function place() {
  await requireWallet();
  const instrument = marketBook.instrument();
  const market = marketBook.info();
  if (!instrument || !market) throw new Error("Choose an instrument in the book first.");
  const sell = side() === "sell";
  const hours = Number($("market-order-expiry").value);
  if (!Number.isInteger(hours) || hours < 1 || hours > 8760) throw new Error("expiry: whole hours from 1 to 8760");
  const terms = orderTerms({ sell, amount: $("market-order-amount").value, price: $("market-order-price").value, decimals: instrument.decimals });
  await loadApprovals(instrument);
  const gap = missing(needs(instrument, sell, terms, BigInt(market.maker_fee_bps)));
  showApprovals();
  if (gap) throw new Error(`Approve first: the market may not move ${gap.what} yet (nothing was signed).`);
  const account = currentAccount();
  const nonces = await getJSON(`/api/v1/accounts/${account}/nonces`); // the chain's time
  const order = {
    maker: account,
    asset: instrument.asset,
    token_id: instrument.tokenId,
    sell,
    amount: terms.amount.toString(),
    quote_amount: terms.quote.toString(),
    nonce: String(Date.now()), // milliseconds, as the CLI (a cancel of all goes by it)
    expiry: nonces.chain_time + hours * 3600,
  };
  say("Sign the order in your wallet…");
  const signature = await signTypedData(orderTypedData(market, order));
  const placed = await postJSON("/api/v1/market/orders", { ...order, signature });
  say(`Order ${short(placed.order_hash)} is in the book (${placed.status}): ${sell ? "sell" : "buy"} ${units(instrument, placed.amount)} at ${unitPrice(instrument, placed.price)}.`, "ok");
  await Promise.all([showOrders(), marketBook.reload()]);
}

async function cancel(orderHash) {
  await requireWallet();
  const order = await getJSON(`/api/v1/market/orders/${orderHash}`);
  const market = marketBook.info();
  say(`Sign the cancellation of order ${short(orderHash)} in your wallet…`);
  const accepted = await relay(market.domain.verifyingContract, cancelCalldata(order));
  notes.set(orderHash, `cancel relayed (action ${short(accepted.action_id)})`);
  await showOrders();
  const action = await follow(accepted, `Cancellation of ${short(orderHash)}`);
  notes.set(orderHash, "cancelled on-chain; the book follows");
  say(`Order ${short(orderHash)} is cancelled on-chain (transaction ${short(action.tx_hash)}).`, "ok");
  await showOrders();
}

function describe(order) {
  const found = marketBook.describe(order.asset, order.token_id);
  return found ?? { label: `${short(order.asset)} #${order.token_id}`, decimals: order.token_id === "0" ? 18 : 0, unit: "unit" };
}

async function showOrders() {
  const account = currentAccount();
  const el = $("market-my-orders");
  const head =
    '<thead><tr><th scope="col">instrument</th><th scope="col">side</th><th class="num" scope="col">price</th><th class="num" scope="col">amount</th><th class="num" scope="col">left</th><th scope="col">status</th><th scope="col">expires (UTC)</th><th scope="col"></th></tr></thead>';
  let body = '<tr><td colspan="8" class="muted">Connect a wallet to see your orders.</td></tr>';
  if (account) {
    const orders = await getJSON(`/api/v1/market/orders?maker=${account}&status=open&status=partially_filled`);
    body =
      orders
        .map((o) => {
          const inst = describe(o);
          const status = [o.status.replace("_", " "), o.dropped ? `not in the book: ${o.dropped}` : "", notes.get(o.order_hash) ?? ""].filter(Boolean).join(" · ");
          return (
            `<tr data-order="${esc(o.order_hash)}"><td>${esc(inst.label)}</td><td>${o.sell ? "sell" : "buy"}</td>` +
            `<td class="num">${unitPrice(inst, o.price)} / ${esc(inst.unit)}</td><td class="num">${units(inst, o.amount)}</td><td class="num">${units(inst, o.remaining)}</td>` +
            `<td>${esc(status)}</td><td>${when(o.expiry)}</td><td><button type="button" class="cancel" data-cancel="${esc(o.order_hash)}">Cancel</button></td></tr>`
          );
        })
        .join("") || '<tr><td colspan="8" class="muted">No open orders.</td></tr>';
  }
  el.innerHTML = el.querySelector("caption").outerHTML + head + `<tbody>${body}</tbody>`;
  for (const b of el.querySelectorAll("button[data-cancel]")) {
    b.disabled = busy;
    b.addEventListener("click", () => exclusive(() => cancel(b.dataset.cancel)));
  }
}

// ------------------------------------------------------------------ the card

export const marketTrade = {
  init(panel) {
    root = panel;
    $("market-order-form").addEventListener("submit", (e) => {
      e.preventDefault();
      exclusive(place);
    });
    $("market-approve").addEventListener("click", () => exclusive(approve));
    $("market-order-form").addEventListener("input", () => {
      showTerms();
      showApprovals();
    });
    marketBook.onChange(() => this.refresh().catch((err) => say(explain(err), "error")));
    onAccount(() => {
      approvals = null;
      notes.clear();
      say("");
      this.refresh().catch((err) => say(explain(err), "error"));
    });
  },

  async refresh() {
    const card = $("market-trade-card");
    card.hidden = $("market-book-card").hidden || !has("/api/v1/market/approvals/{owner}");
    if (card.hidden) return;
    const account = currentAccount();
    $("market-trade-wallet").textContent = !hasWallet()
      ? "No browser wallet: install an EIP-1193 wallet to trade here (the book above is read-only)."
      : account
        ? `Trading as ${account}.`
        : "Connect your wallet (top right) to place and cancel orders.";
    $("market-order-form").hidden = !account;
    const instrument = marketBook.instrument();
    showTerms();
    let problem = null;
    if (account && instrument && !busy) {
      try {
        await loadApprovals(instrument);
      } catch (err) {
        approvals = null; // e.g. 422 TokenNotAllowed: a pool the market does not list
        problem = explain(err);
      }
    }
    showApprovals();
    if (problem) $("market-approvals").textContent = problem;
    await showOrders();
  },
};
