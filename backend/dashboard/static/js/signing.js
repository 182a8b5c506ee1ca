// What the dashboard asks a wallet to sign, as gpucap/signing.py defines it: market orders,
// ERC-2771 forward requests and EIP-2612 permits. The types and domains are the API's own
// (GET /api/v1/market, /api/v1/forwarder, /api/v1/market/approvals/{owner}, all served from
// gpucap/signing.py and the deployed contracts), never retyped here, so the wallet signs
// exactly what the contracts verify. uint256 values travel as decimal strings (a capacity
// token id is 128 bits, a share amount 18 decimals: beyond a JS number).
//
// Also the calldata of the two calls a wallet user relays from here (Market.cancel and
// CapacityToken.setApprovalForAll): static arguments only, so their ABI encoding is a row
// of 32-byte words after the selector (tests/dashboard checks the selectors against the
// compiled ABIs).

// EIP712Domain's fields in the order EIP-712 lists them; a domain names those it uses.
// Wallets (MetaMask's eth-sig-util) hash the domain by this type: it must be sent.
const DOMAIN_FIELDS = [
  ["name", "string"],
  ["version", "string"],
  ["chainId", "uint256"],
  ["verifyingContract", "address"],
  ["salt", "bytes32"],
];

export function typedData(domain, types, primaryType, message) {
  const fields = DOMAIN_FIELDS.filter(([name]) => domain[name] !== undefined).map(([name, type]) => ({ name, type }));
  return { types: { EIP712Domain: fields, ...types }, domain, primaryType, message };
}

// IMarket.Order as the API's order route takes it (snake_case, decimal strings), signed
// in the Market's domain with its Order type (GET /api/v1/market).
export function orderTypedData(market, order) {
  return typedData(market.domain, market.types, market.primary_type ?? "Order", {
    maker: order.maker,
    asset: order.asset,
    tokenId: order.token_id,
    sell: order.sell,
    amount: order.amount,
    quoteAmount: order.quote_amount,
    nonce: order.nonce,
    expiry: order.expiry,
  });
}

// A ForwardRequest (GpucapForwarder's domain and type, GET /api/v1/forwarder).
export function forwardTypedData(forwarder, request) {
  return typedData(forwarder.domain, forwarder.types, "ForwardRequest", {
    from: request.from,
    to: request.to,
    value: String(request.value),
    gas: String(request.gas),
    nonce: String(request.nonce),
    deadline: request.deadline,
    data: request.data,
  });
}

// An EIP-2612 permit in the token's own domain (GET /api/v1/market/approvals/{owner}).
export function permitTypedData(token, types, permit) {
  return typedData(token.domain, types, "Permit", {
    owner: permit.owner,
    spender: permit.spender,
    value: permit.value,
    nonce: permit.nonce,
    deadline: permit.deadline,
  });
}

// ------------------------------------------------------------------ calldata

// keccak256 of each signature, first 4 bytes (checked against build/contracts/*.json).
export const SELECTORS = {
  "cancel((address,address,uint256,bool,uint256,uint256,uint256,uint64))": "f5104ae7",
  "setApprovalForAll(address,bool)": "a22cb465",
};
const UINT256_MAX = (1n << 256n) - 1n;

function word(value, type) {
  let n;
  if (type === "address") {
    if (!/^0x[0-9a-fA-F]{40}$/.test(value)) throw new Error(`not an address: ${value}`);
    n = BigInt(value);
  } else if (type === "bool") {
    n = value ? 1n : 0n;
  } else {
    n = BigInt(value);
    if (n < 0n || n > UINT256_MAX) throw new Error(`not a uint256: ${value}`);
  }
  return n.toString(16).padStart(64, "0");
}

export function cancelCalldata(order) {
  const fields = [
    [order.maker, "address"],
    [order.asset, "address"],
    [order.token_id, "uint"],
    [order.sell, "bool"],
    [order.amount, "uint"],
    [order.quote_amount, "uint"],
    [order.nonce, "uint"],
    [order.expiry, "uint"],
  ];
  return "0x" + SELECTORS["cancel((address,address,uint256,bool,uint256,uint256,uint256,uint64))"] + fields.map(([v, t]) => word(v, t)).join("");
}

export function setApprovalForAllCalldata(operator, approved) {
  return "0x" + SELECTORS["setApprovalForAll(address,bool)"] + word(operator, "address") + word(approved, "bool");
}
