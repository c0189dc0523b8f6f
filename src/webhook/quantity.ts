/**
 * Kubernetes resource quantities (`250m`, `1`, `64Mi`, `1e3`, `0.5Gi`), as far as the injector
 * needs them: is a string one, and how do two compare (a request must not exceed its limit).
 * The value is a float: exact enough to compare what people write in annotations.
 */
const QUANTITY = /^(\+)?(\d+(?:\.\d*)?|\.\d+)(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE]([+-]?\d+))?$/;

const SUFFIX: Readonly<Record<string, number>> = Object.freeze({
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
});

/** The numeric value of a non-negative quantity, or null when the text is not one. */
export function parseQuantity(text: string): number | null {
  const m = QUANTITY.exec(text);
  if (m === null) return null;
  const [, , digits, suffix, exponent] = m;
  const base = Number(digits);
  if (suffix !== undefined) return base * SUFFIX[suffix]!;
  if (exponent !== undefined) return base * 10 ** Number(exponent);
  return base;
}
