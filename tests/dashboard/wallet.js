// The page side of tests/dashboard/wallet.py: EIP-1193 providers announced as EIP-6963 asks.
// "Test wallet" forwards request() to window.__walletRequest (exposed by Playwright: the
// Python wallet answers, and may ask for events to be emitted); "Other wallet" (the user's
// second extension, announced first) answers nothing.
(() => {
  const wallet = (name, uuid, request) => {
    const handlers = {};
    const provider = {
      request: async (args) => {
        const answer = await request(args.method, args.params ?? []);
        if (answer.error) throw Object.assign(new Error(answer.error.message), { code: answer.error.code });
        for (const [event, value] of answer.emit ?? []) (handlers[event] ?? []).forEach((f) => f(value));
        return answer.result;
      },
      on: (event, fn) => { (handlers[event] ??= []).push(fn); },
      removeListener: () => {},
    };
    const info = Object.freeze({ uuid, name, icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E", rdns: `local.gpucap.${uuid}` });
    const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: Object.freeze({ info, provider }) }));
    window.addEventListener("eip6963:requestProvider", announce);
    announce();
  };
  const unauthorized = async () => ({ error: { code: 4100, message: "Unauthorized" } });
  wallet("Other wallet", "other-wallet", unauthorized);
  wallet("Test wallet", "test-wallet", (method, params) => window.__walletRequest(method, params));
})();
