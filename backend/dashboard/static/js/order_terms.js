// A limit order's terms in the contract's units, from what a person types: an amount of
// GPU-hours (whole units) or pool shares (18 decimals), a price in tUSD (6 decimals) per
// GPU-hour or per whole share. Exact (BigInt), rounded as the CLI rounds (gpucap/cli_market.py)
// and the market rounds its fills: in the maker's favour, up for a sell, down for a bid.

export const USD_DECIMALS = 6;
const DECIMAL = /^[0-9]+(\.[0-9]+)?$/;

// "1.5" with 18 decimals -> 1500000000000000000n; an Error saying why otherwise.
export function parseUnits(text, decimals, what) {
  const value = String(text ?? "").trim();
  if (!DECIMAL.test(value)) throw new Error(`${what}: "${value}" is not a plain decimal number`);
  const [whole, frac = ""] = value.split(".");
  if (frac.length > decimals) {
    throw new Error(decimals === 0 ? `${what}: whole units only` : `${what}: at most ${decimals} decimals`);
  }
  return BigInt(whole + frac.padEnd(decimals, "0"));
}

// {amount, quote}: base units of the asset and the stablecoin units they cost in all.
export function orderTerms({ sell, amount, price, decimals }) {
  const units = parseUnits(amount, decimals, "amount");
  if (units === 0n) throw new Error("amount: must be above zero");
  const text = String(price ?? "").trim();
  if (!DECIMAL.test(text)) throw new Error(`price: "${text}" is not a plain decimal number`);
  const places = (text.split(".")[1] ?? "").length;
  const scaled = parseUnits(text, places, "price"); // price = scaled / 10^places tUSD per unit
  const numerator = units * scaled * 10n ** BigInt(USD_DECIMALS);
  const denominator = 10n ** BigInt(places + decimals);
  const quote = sell ? (numerator + denominator - 1n) / denominator : numerator / denominator;
  if (quote === 0n) throw new Error("price: the order would be worth less than one stablecoin unit");
  return { amount: units, quote };
}

// 1500000n with 6 decimals -> "1.5"
export function formatUnits(value, decimals) {
  const digits = BigInt(value).toString().padStart(decimals + 1, "0");
  const whole = digits.slice(0, digits.length - decimals);
  const frac = digits.slice(digits.length - decimals).replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : whole;
}
