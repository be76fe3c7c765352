/**
 * Row-wise softmax of [N, C] logits in float64: the class probabilities `setar classify` reports
 * (each row's maximum subtracted first, then exp, then divided by the row's sum).
 */
export function softmaxRows(logits: ArrayLike<number>, n: number, c: number): Float64Array {
  const out = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let j = 0; j < c; j++) max = Math.max(max, logits[i * c + j]!);
    let sum = 0;
    for (let j = 0; j < c; j++) sum += out[i * c + j] = Math.exp(logits[i * c + j]! - max);
    for (let j = 0; j < c; j++) out[i * c + j] = out[i * c + j]! / sum;
  }
  return out;
}
