// EIP-1193: a browser wallet (window.ethereum) is optional; without one the page is read-only.
// The wallet's chain is asked (eth_chainId) and compared with the chain gpucap signs for
// (the forwarder's EIP-712 domain): a wallet on another chain is said plainly, since
// anything it signed there would be refused here.
import { getJSON } from "./api.js";

const listeners = new Set();
let account = null;
let provider = null;

export function currentAccount() {
  return account;
}

// fn(account, previous): called on connect, on the wallet's accountsChanged, on disconnect.
export function onAccount(fn) {
  listeners.add(fn);
}

function setAccount(a) {
  const previous = account;
  account = a ?? null;
  document.getElementById("wallet-address").textContent = account ? account : "";
  document.getElementById("wallet-connect").hidden = Boolean(account);
  for (const fn of listeners) fn(account, previous);
  checkChain();
}

const asNumber = (id) => (typeof id === "string" ? Number.parseInt(id, id.startsWith("0x") ? 16 : 10) : Number(id));

// Says nothing when the wallet is on gpucap's chain (or no account is connected).
async function checkChain(walletChainId) {
  const box = document.getElementById("wallet-chain");
  if (!provider || !account) {
    box.hidden = true;
    return;
  }
  try {
    const [theirs, ours] = await Promise.all([
      walletChainId ?? provider.request({ method: "eth_chainId" }),
      getJSON("/api/v1/forwarder").then((f) => f.domain.chainId),
    ]);
    const wallet = asNumber(theirs);
    const expected = asNumber(ours);
    box.hidden = wallet === expected;
    box.textContent = wallet === expected ? "" : `Wrong network: your wallet is on chain ${wallet}, gpucap runs on chain ${expected}. Switch networks in your wallet.`;
  } catch (err) {
    box.hidden = false;
    box.textContent = `Cannot tell which chain your wallet is on (${err.reason ?? err.message ?? "no answer"}).`;
  }
}

export function initWallet() {
  provider = window.ethereum ?? null;
  const button = document.getElementById("wallet-connect");
  document.getElementById("wallet-none").hidden = Boolean(provider);
  if (!provider) return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      const accounts = await provider.request({ method: "eth_requestAccounts" });
      setAccount(accounts[0]);
    } catch (err) {
      document.getElementById("wallet-address").textContent = `wallet: ${err.message ?? "refused"}`;
    }
  });
  provider.on?.("accountsChanged", (accounts) => setAccount(accounts[0]));
  provider.on?.("chainChanged", (chainId) => checkChain(chainId));
  // Already authorised? eth_accounts asks nothing of the user.
  provider.request({ method: "eth_accounts" }).then((a) => a?.length && setAccount(a[0]), () => {});
}
