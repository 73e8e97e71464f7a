"""Synthetic attention for the canvas demo, its browser tests and benchmark: any T, every cell and block max exact.

Up to ``MATERIALIZE_MAX`` cells per head the weights are real: attention-like logits (a previous-token band, a
sink, stripes, noise), masked, softmax per row, and every tile comes from ``viz.tiles`` on the full arrays. Above it
(T = 32,768 has 10^9 cells per head) a cell is ``A[q // 32, k // 32] * ((1 - fq[q]) - fk[k])``: a coarse map A in
[0, 1] times a ramp that is 1 at one known cell of each 32 x 32 block, so that the maximum of any aligned
power-of-two block and where it is follow from A and two 1-D minima, bitwise equal to evaluating its cells.
Only padding masks (whole key columns) are offered there; causal masks need the materialized path.
"""

from __future__ import annotations

import numpy as np

from viz import tiles

COARSE = 32
MATERIALIZE_MAX = 1024 * 1024  # cells per head
WORDS = ["the", "cat", "sat", "on", "a", "mat", ",", "and", "then", "it", "saw", "dog", ".", "Über", "naïve", "→",
         "tokenization", "\n", "12", "1"]
STAGES = {"weights": "weights", "scores": "scores", "masked": "masked scores"}


def tokens(n: int, shift: int = 0) -> list[str]:
    return [WORDS[(i * 7 + i // 3 + shift) % len(WORDS)] for i in range(n)]


def _logits(rng, h: int, R: int, C: int) -> np.ndarray:
    i = np.arange(R, dtype=np.float32)[:, None] * (C / R)
    j = np.arange(C, dtype=np.float32)[None, :]
    kind = h % 4
    if kind == 0:  # previous token / local band
        L = 5.0 * np.exp(-(((i - j - 1.0) / (1.0 + 0.01 * C)) ** 2))
    elif kind == 1:  # sink on the first key, a weak diagonal
        L = np.where(j == 0, 4.0, 0.0) + 2.0 * np.exp(-(((i - j) / 2.0) ** 2))
    elif kind == 2:  # stripes: every (3 + h)-th key
        L = np.where((np.arange(C) % (3 + h) == 0)[None, :], 3.0, 0.0) + 0 * i
    else:
        L = 1.5 * rng.standard_normal((R, C))
    return (L + 0.6 * rng.standard_normal((R, C))).astype(np.float32)


class Synthetic:
    """One attention (one layer) of ``n_heads`` heads over ``n_rows`` queries and ``n_cols`` keys."""

    def __init__(self, n_rows: int, n_cols: int | None = None, n_heads: int = 4, layer: int = 0, *,
                 causal: bool = False, pad: int = 0, stage: str = "weights", seed: int = 0):
        self.n_rows, self.n_cols = int(n_rows), int(n_cols or n_rows)
        self.n_heads, self.layer, self.stage, self.pad, self.causal = int(n_heads), int(layer), stage, int(pad), causal
        if stage not in STAGES:
            raise ValueError(f"stage {stage!r}: one of {sorted(STAGES)}")
        self.materialized = self.n_rows * self.n_cols <= MATERIALIZE_MAX
        if causal and not self.materialized:
            raise ValueError("causal masks need T x T <= MATERIALIZE_MAX (the block formula covers padding only)")
        rng = np.random.default_rng([seed, layer, self.n_rows, self.n_cols])
        R, C = self.n_rows, self.n_cols
        self.key_masked = np.zeros(C, dtype=bool)
        if pad:
            self.key_masked[C - pad:] = True
        if self.materialized:
            self.codes = np.zeros((R, C), dtype=np.uint8)
            if causal:
                self.codes |= np.where(np.triu(np.ones((R, C), dtype=bool), 1),
                                       np.uint8(tiles.REASON_BITS["causal"]), np.uint8(0))
            self.codes[:, self.key_masked] |= np.uint8(tiles.REASON_BITS["padding"])
            logits = np.stack([_logits(rng, h, R, C) for h in range(self.n_heads)])  # (H, R, C)
            masked = np.broadcast_to(self.codes != 0, logits.shape)
            ml = np.where(masked, np.float32(-np.inf), logits)
            w = np.exp(ml - ml.max(axis=2, keepdims=True))
            w = (w / w.sum(axis=2, keepdims=True)).astype(np.float32)
            self.full = {"weights": w, "scores": logits, "masked": ml.astype(np.float32)}[stage]
            return
        cr, cc = -(-R // COARSE), -(-C // COARSE)
        L = np.stack([_logits(rng, h, cr, cc) for h in range(self.n_heads)])
        self.A = np.exp(L - L.max(axis=2, keepdims=True)).astype(np.float32)  # (H, cr, cc), each row's max is 1
        self.alpha = rng.integers(0, COARSE, cr)  # where in its 32-row block a row reaches the ramp's 1
        self.alpha[-1] = min(self.alpha[-1], R - 1 - COARSE * (cr - 1))
        self.beta = rng.integers(0, COARSE, cc)
        last_key = C - 1 - pad  # the last key that is not padding
        self.beta = np.minimum(self.beta, np.maximum(0, last_key - COARSE * np.arange(cc)))
        self.beta[-1] = min(self.beta[-1], C - 1 - COARSE * (cc - 1))
        q, k = np.arange(R), np.arange(C)
        self.fq = (np.float32(0.25 / 31) * ((q - self.alpha[q // COARSE]) % COARSE)).astype(np.float32)
        self.fk = (np.float32(0.25 / 31) * ((k - self.beta[k // COARSE]) % COARSE)).astype(np.float32)

    # ---- what the canvas shows
    @property
    def range(self) -> tuple[float, float, str]:
        if self.stage == "weights":
            return tiles.value_range("weights")
        return (-8.0, 8.0, "rdbu_r")

    def _stage(self, w: np.ndarray) -> np.ndarray:
        """Weights-like ramp values -> this stage's values (an increasing map, so block maxima stay maxima)."""
        if self.stage == "weights":
            return w
        return (np.float32(10.0) * w - np.float32(2.0)).astype(np.float32)

    def values(self, head: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Exact values of the cells [r0, r1) x [c0, c1)."""
        if self.materialized:
            return self.full[head, r0:r1, c0:c1]
        q, k = np.arange(r0, r1), np.arange(c0, c1)
        a = self.A[head][np.ix_(q // COARSE, k // COARSE)]
        w = a * ((np.float32(1) - self.fq[q])[:, None] - self.fk[k][None, :])
        w = self._stage(w.astype(np.float32))
        if self.stage == "masked":
            w = np.where(self.key_masked[c0:c1][None, :], np.float32(-np.inf), w)
        return w

    def reason_codes(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Reason bits of the cells [r0, r1) x [c0, c1) (masks apply to the masked scores and the weights)."""
        if self.stage == "scores":
            return np.zeros((r1 - r0, c1 - c0), np.uint8)
        if self.materialized:
            return self.codes[r0:r1, c0:c1]
        bits = np.where(self.key_masked[c0:c1], np.uint8(tiles.REASON_BITS["padding"]), np.uint8(0))
        return np.broadcast_to(bits[None, :], (r1 - r0, c1 - c0))

    def pooled(self, head: int, window: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(block maxima, argmax inside each block, reason bits) of ``window`` (``tiles.detail_window``)."""
        r0, r1, c0, c1, p = (int(window[k]) for k in ("r0", "r1", "c0", "c1", "pool"))
        if self.materialized or p == 1:
            codes = self.reason_codes(r0, r1, c0, c1)
            v = self.values(head, r0, r1, c0, c1)
            if p == 1:
                return v, np.zeros(v.shape, np.uint16), codes
            pooled, argmax = tiles.block_max_argmax(v, p, codes != 0)
            return pooled, argmax, tiles.pool_reasons(codes, p)
        assert r0 % p == 0 and c0 % p == 0, "windows start on the block grid (tiles.detail_window)"
        rows = [(a, min(a + p, r1)) for a in range(r0, r1, p)]
        cols = [(a, min(a + p, c1)) for a in range(c0, c1, p)]
        if p >= COARSE:  # whole coarse blocks: the max of A, at the ramp's 1 of the coarse block that holds it
            f = p // COARSE
            A = np.where(self._coarse_padded()[None, :], np.float32(np.nan),
                         self.A[head])[r0 // COARSE:-(-r1 // COARSE), c0 // COARSE:-(-c1 // COARSE)]
            m, am = tiles.block_max_argmax(A, f, np.isnan(A))
            dr, dc = am // f, am % f
            cr = (r0 // COARSE) + np.arange(m.shape[0])[:, None] * f + dr
            cc = (c0 // COARSE) + np.arange(m.shape[1])[None, :] * f + dc
            qa = cr * COARSE + self.alpha[cr]
            ka = cc * COARSE + self.beta[cc]
            br = r0 + np.arange(m.shape[0])[:, None] * p
            bc = c0 + np.arange(m.shape[1])[None, :] * p
            argmax = ((qa - br) * p + (ka - bc)).astype(np.uint32 if p > 256 else np.uint16)
            vals = self._stage(m.astype(np.float32))
            empty = np.isnan(m)
        else:  # inside one coarse block: the ramp's smallest fq and fk, the key minimum over unmasked keys only
            fq_i = np.array([a + int(np.argmin(self.fq[a:b])) for a, b in rows])
            fk_j, empty_j = [], []
            for a, b in cols:
                ok = np.flatnonzero(~self.key_masked[a:b])
                empty_j.append(ok.size == 0)
                fk_j.append(a + (int(ok[np.argmin(self.fk[a:b][ok])]) if ok.size else 0))
            fk_j = np.array(fk_j)
            a = self.A[head][np.ix_(fq_i // COARSE, fk_j // COARSE)]
            vals = self._stage((a * ((np.float32(1) - self.fq[fq_i])[:, None] - self.fk[fk_j][None, :])
                                ).astype(np.float32))
            br = np.array([a for a, _ in rows])[:, None]
            bc = np.array([a for a, _ in cols])[None, :]
            argmax = ((fq_i[:, None] - br) * p + (fk_j[None, :] - bc)).astype(np.uint16)
            empty = np.broadcast_to(np.array(empty_j)[None, :], vals.shape)
        vals = np.where(empty, np.float32(np.nan), vals).astype(np.float32)
        bit = 0 if self.stage == "scores" else tiles.REASON_BITS["padding"]  # only padding: every key of the block
        return vals, np.where(empty, 0, argmax).astype(argmax.dtype), np.where(empty, bit, 0).astype(np.uint8)

    def _coarse_padded(self) -> np.ndarray:
        """Per coarse key block: every key of it is padding."""
        C = self.n_cols
        starts = np.arange(0, C, COARSE)
        return np.array([self.key_masked[s:min(s + COARSE, C)].all() for s in starts])

    def overview_tile(self, head: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 tile, reason bits) of one head's whole map, max-pooled by ``pool``."""
        lo, hi, _ = self.range
        full = {"r0": 0, "r1": self.n_rows, "c0": 0, "c1": self.n_cols, "pool": pool}
        v, _, codes = self.pooled(head, full)
        return tiles.quantize(v, lo, hi), codes
