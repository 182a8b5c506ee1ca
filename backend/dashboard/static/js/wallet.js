// EIP-1193: a browser wallet (window.ethereum) is optional; without one the page is read-only.

const listeners = new Set();
let account = null;

export function currentAccount() {
  return account;
}

export function onAccount(fn) {
  listeners.add(fn);
}

function setAccount(a) {
  account = a ?? null;
  document.getElementById("wallet-address").textContent = account ? account : "";
  document.getElementById("wallet-connect").hidden = Boolean(account);
  for (const fn of listeners) fn(account);
}

export function initWallet() {
  const provider = window.ethereum;
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
  // Already authorised? eth_accounts asks nothing of the user.
  provider.request({ method: "eth_accounts" }).then((a) => a?.length && setAccount(a[0]), () => {});
}
