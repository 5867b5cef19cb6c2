"""The order in which an epoch visits the rows: a keyed pseudo-random permutation.

``permute(i, ...)`` maps position i of [0, n) to a row of [0, n), a bijection
chosen by (seed, epoch): a 4-round Feistel network over the smallest even
number of bits that covers n, whose round function is splitmix64's finaliser,
applied again until the value lands below n ("cycle walking", Black & Rogaway
2002; at most 4n values, so fewer than 4 rounds of walking on average).

Counter-based: a position's row is computed alone, with no state and no sort.
So the CPU (Numba compiles these very functions, fastsoftmax/backends/cpu/rows.py)
and the GPU (kernels/shuffle.cu spells them in CUDA) visit the rows in the same
order, no permutation crosses from host to device, and a resumed run visits
epoch e's rows as the uninterrupted run did.

Plain integer arithmetic masked to 64 bits: exact for Python ints (the
reference) and for Numba's uint64 (register_jitable: callable from jitted code
too, as itself).
"""

from __future__ import annotations

from numba.extending import register_jitable

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment, 2^64 / golden ratio


@register_jitable
def mix64(x):
    """splitmix64 (Steele, Lea & Flood 2014) of x: a bijection of 64-bit words."""
    z = (x + _GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def round_keys(seed: int, epoch: int) -> tuple[int, int, int, int]:
    """The Feistel network's four round keys for one epoch of a run."""
    base = mix64(mix64(seed & MASK64) ^ (epoch & MASK64))
    return mix64(base), mix64(base + 1), mix64(base + 2), mix64(base + 3)


def halves(n: int) -> tuple[int, int]:
    """(bits, mask) of each Feistel half for n rows (n >= 1): the two halves hold every value below n."""
    half = (max(2, (n - 1).bit_length()) + 1) // 2
    return half, (1 << half) - 1


@register_jitable
def permute(i, n, half, mask, k0, k1, k2, k3):
    """The row that position i (< n) of the epoch keyed k0..k3 visits; (half, mask) = halves(n).

    Numba types every argument as uint64 (a mask computed inside would be a
    signed integer, and mixed signed/unsigned arithmetic turns to float).
    """
    x = i
    while True:
        left, right = x >> half, x & mask
        left, right = right, left ^ (mix64(right ^ k0) & mask)
        left, right = right, left ^ (mix64(right ^ k1) & mask)
        left, right = right, left ^ (mix64(right ^ k2) & mask)
        left, right = right, left ^ (mix64(right ^ k3) & mask)
        x = (left << half) | right
        if x < n:
            return x
