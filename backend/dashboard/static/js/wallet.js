// EIP-1193: a browser wallet is optional; without one the page is read-only.
// Wallets are found as EIP-6963 asks (each extension announces itself on the window, so
// two installed wallets do not fight over window.ethereum; with several the header offers
// a choice) and, for wallets that predate it, as window.ethereum.
// The wallet's chain is asked (eth_chainId) and compared with the chain gpucap signs for
// (the forwarder's EIP-712 domain): a wallet on another chain is said plainly and offered
// a switch (wallet_switchEthereumChain), since anything it signed there would be refused
// here. Nothing is signed while the chains differ.
import { getJSON } from "./api.js";

const listeners = new Set();
const announced = new Map(); // EIP-6963 uuid -> {info, provider}
let account = null;
let provider = null;
let expectedChain = null; // gpucap's chain id, read once

// EIP-1193 error codes a user causes (the wallet's answer, not a fault).
export const USER_REJECTED = 4001;
const UNRECOGNIZED_CHAIN = 4902;

export class WalletError extends Error {
  constructor(message, code = null) {
    super(message);
    this.code = code;
  }
}

export function currentAccount() {
  return account;
}

export function hasWallet() {
  return provider !== null;
}

// fn(account, previous): called on connect, on the wallet's accountsChanged, on disconnect.
export function onAccount(fn) {
  listeners.add(fn);
}

function setAccount(a) {
  const previous = account;
  account = a ?? null;
  document.getElementById("wallet-address").textContent = account ? account : "";
  document.getElementById("wallet-connect").hidden = !provider || Boolean(account);
  for (const fn of listeners) fn(account, previous);
  checkChain();
}

const asNumber = (id) => (typeof id === "string" ? Number.parseInt(id, id.startsWith("0x") ? 16 : 10) : Number(id));

async function gpucapChain() {
  if (expectedChain === null) expectedChain = asNumber((await getJSON("/api/v1/forwarder")).domain.chainId);
  return expectedChain;
}

// Says nothing when the wallet is on gpucap's chain (or no account is connected).
async function checkChain(walletChainId) {
  const box = document.getElementById("wallet-chain");
  const switcher = document.getElementById("wallet-switch");
  if (!provider || !account) {
    box.hidden = switcher.hidden = true;
    return;
  }
  try {
    const [theirs, expected] = await Promise.all([walletChainId ?? provider.request({ method: "eth_chainId" }), gpucapChain()]);
    const wallet = asNumber(theirs);
    box.hidden = switcher.hidden = wallet === expected;
    box.textContent = wallet === expected ? "" : `Wrong network: your wallet is on chain ${wallet}, gpucap runs on chain ${expected}. Switch networks in your wallet.`;
    switcher.textContent = `Switch to chain ${expected}`;
  } catch (err) {
    box.hidden = false;
    switcher.hidden = true;
    box.textContent = `Cannot tell which chain your wallet is on (${err.reason ?? err.message ?? "no answer"}).`;
  }
}

async function switchChain() {
  const box = document.getElementById("wallet-chain");
  const expected = await gpucapChain();
  try {
    await provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: `0x${expected.toString(16)}` }] });
    await checkChain(); // a wallet that emits no chainChanged is asked again
  } catch (err) {
    box.hidden = false;
    box.textContent =
      err.code === UNRECOGNIZED_CHAIN
        ? `Your wallet does not know chain ${expected}: add the network gpucap runs on in your wallet, then switch to it.`
        : `The wallet did not switch to chain ${expected}: ${explain(err)}`;
  }
}

// The account and provider to sign with, on gpucap's chain; otherwise a WalletError saying why.
export async function requireWallet() {
  if (!provider) throw new WalletError("No browser wallet: install one (an EIP-1193 wallet) to trade.");
  if (!account) throw new WalletError("Connect your wallet first.");
  const [theirs, expected] = await Promise.all([provider.request({ method: "eth_chainId" }), gpucapChain()]);
  if (asNumber(theirs) !== expected) {
    await checkChain(theirs);
    throw new WalletError(`Your wallet is on chain ${asNumber(theirs)}, gpucap on chain ${expected}: switch networks first (nothing was signed).`);
  }
  return { provider, account };
}

// EIP-712 typed data ({types (with EIP712Domain), domain, primaryType, message}) signed by
// the connected account: the 65-byte signature as 0x hex.
export async function signTypedData(typed) {
  const wallet = await requireWallet();
  return wallet.provider.request({ method: "eth_signTypedData_v4", params: [wallet.account, JSON.stringify(typed)] });
}

// One line for the user: the API's code and reason, the wallet's refusal, or its error.
export function explain(err) {
  if (err?.code === USER_REJECTED) return "You declined the request in your wallet: nothing was signed or sent.";
  if (err instanceof WalletError) return err.message;
  if (err?.status !== undefined && err?.reason !== undefined) return `Refused (${err.status} ${err.code}): ${err.reason}`;
  if (err?.code !== undefined && err?.code !== null) return `Wallet error ${err.code}: ${err.message ?? String(err)}`;
  return err?.message ?? String(err); // the page's own (a form value it cannot use)
}

// --------------------------------------------------------------- discovery

function pickProvider(next) {
  if (next === provider) return;
  provider = next;
  document.getElementById("wallet-none").hidden = Boolean(provider);
  if (!provider) return;
  provider.on?.("accountsChanged", (accounts) => next === provider && setAccount(accounts[0]));
  provider.on?.("chainChanged", (chainId) => next === provider && checkChain(chainId));
  setAccount(null);
  // Already authorised? eth_accounts asks nothing of the user.
  provider.request({ method: "eth_accounts" }).then((a) => next === provider && a?.length && setAccount(a[0]), () => {});
}

function showChoices() {
  const pick = document.getElementById("wallet-pick");
  const choices = [...announced.values()];
  pick.hidden = choices.length < 2;
  pick.innerHTML = choices.map((d) => `<option value="${d.info.uuid}"></option>`).join("");
  choices.forEach((d, i) => (pick.options[i].textContent = d.info.name));
  const current = choices.find((d) => d.provider === provider);
  if (current) pick.value = current.info.uuid;
}

function announce(event) {
  const detail = event.detail;
  if (!detail?.info?.uuid || typeof detail.provider?.request !== "function") return;
  announced.set(detail.info.uuid, detail);
  // The first wallet announced is used until the user picks another; an announced wallet
  // replaces a bare window.ethereum (often the same wallet, or one that took it over).
  if (!provider || ![...announced.values()].some((d) => d.provider === provider)) pickProvider(detail.provider);
  showChoices();
}

export function initWallet() {
  document.getElementById("wallet-connect").addEventListener("click", async () => {
    try {
      const accounts = await provider.request({ method: "eth_requestAccounts" });
      setAccount(accounts[0]);
    } catch (err) {
      document.getElementById("wallet-address").textContent = `wallet: ${explain(err)}`;
    }
  });
  document.getElementById("wallet-switch").addEventListener("click", switchChain);
  document.getElementById("wallet-pick").addEventListener("change", (e) => pickProvider(announced.get(e.target.value)?.provider ?? null));
  window.addEventListener("eip6963:announceProvider", announce);
  window.dispatchEvent(new Event("eip6963:requestProvider")); // wallets answer synchronously
  if (!provider && window.ethereum) pickProvider(window.ethereum);
  document.getElementById("wallet-none").hidden = Boolean(provider);
}
