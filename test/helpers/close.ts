import assert from 'node:assert/strict';

type Num = ArrayLike<number>;

/**
 * Asserts |actual − expected| ≤ atol + rtol·|expected| elementwise, after checking the shapes.
 * The failure names the tensor, the worst index, the max error and the tolerance.
 */
export function assertClose(actual: Num, expected: Num, opts: { name: string; atol?: number; rtol?: number; shape?: readonly number[]; expectedShape?: readonly number[] }): void {
  const { name, atol = 0, rtol = 0 } = opts;
  if (opts.shape && opts.expectedShape) assert.deepEqual([...opts.shape], [...opts.expectedShape], `${name}: shape`);
  assert.equal(actual.length, expected.length, `${name}: element count`);
  let worst = -1;
  let worstExcess = 0;
  let maxErr = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    const err = Math.abs(actual[i]! - e);
    if (!(err <= maxErr)) maxErr = err;
    const excess = err - (atol + rtol * Math.abs(e));
    if (!(excess <= worstExcess)) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worst >= 0) {
    assert.fail(`${name}: index ${worst}: got ${actual[worst]}, expected ${expected[worst]}; max abs error ${maxErr.toExponential(3)} > atol ${atol} + rtol ${rtol}·|e|`);
  }
}

/** max |x| of an array. */
export function maxAbs(x: Num): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]!));
  return m;
}

/**
 * The clip-tiny-a README's criterion: max |x − ref| ≤ rel · max |ref| for a whole tensor
 * (float32 implementation against the float64 reference).
 */
export function assertRelMax(actual: Num, expected: Num, name: string, rel = 1e-5): number {
  const atol = rel * maxAbs(expected);
  assertClose(actual, expected, { name, atol });
  let m = 0;
  for (let i = 0; i < expected.length; i++) m = Math.max(m, Math.abs(actual[i]! - expected[i]!));
  return m / maxAbs(expected);
}
