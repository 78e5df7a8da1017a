"""Initial placement of hard discs: random sequential placement without overlaps."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simcore._errors import UserInputError
from simcore.models.harddisc.params import Params


@njit(cache=True)
def _place_random(cand, pos, placed, sigma, x0, wx, y0, wy, yper, ax, ay, ncx, ncy, head,
                  nxt):
    """Random sequential addition: accept candidates (unit square samples in cand) that do
    not overlap any placed disc; returns the new number placed."""
    n = pos.shape[0]
    s2 = sigma * sigma
    for k in range(cand.shape[0]):
        if placed >= n:
            break
        x = x0 + cand[k, 0] * wx
        y = y0 + cand[k, 1] * wy
        cx = min(int((x - x0) / ax), ncx - 1)
        cy = min(int((y - y0) / ay), ncy - 1)
        ok = True
        for ox in range(-1, 2):
            kx = cx + ox
            if kx < 0 or kx >= ncx:
                continue
            for oy in range(-1, 2):
                ky = cy + oy
                if yper:
                    if ncy < 3 and oy != 0:
                        continue
                    ky = ky % ncy
                elif ky < 0 or ky >= ncy:
                    continue
                j = head[kx * ncy + ky]
                while j >= 0:
                    dx = x - pos[j, 0]
                    dy = y - pos[j, 1]
                    if yper:
                        dy -= wy * round(dy / wy)
                    if dx * dx + dy * dy < s2:
                        ok = False
                        break
                    j = nxt[j]
                if not ok:
                    break
            if not ok:
                break
        if yper and ncy < 3 and ok:  # few rows: check every row
            for ky in range(ncy):
                for ox in range(-1, 2):
                    kx = cx + ox
                    if kx < 0 or kx >= ncx:
                        continue
                    j = head[kx * ncy + ky]
                    while j >= 0:
                        dx = x - pos[j, 0]
                        dy = y - pos[j, 1]
                        dy -= wy * round(dy / wy)
                        if dx * dx + dy * dy < s2:
                            ok = False
                        j = nxt[j]
        if ok:
            pos[placed, 0] = x
            pos[placed, 1] = y
            c = cx * ncy + cy
            nxt[placed] = head[c]
            head[c] = placed
            placed += 1
    return placed



def _initial_positions(params: Params, g: np.random.Generator) -> np.ndarray:
    n = params.n
    x0, x1, y0, y1 = params.accessible(initial=True)
    wx, wy = x1 - x0, y1 - y0
    pos = np.zeros((n, 2))
    if not params.interactions:
        u = g.random((n, 2))
        pos[:, 0] = x0 + u[:, 0] * wx
        pos[:, 1] = y0 + u[:, 1] * wy
        return pos
    yper = params.y_boundary == "periodic"
    # cells of side >= σ (the 3×3 block covers every overlap) and about one disc per cell:
    # σ-cells alone would need (L/σ)² entries, 6 GB for the knudsen preset
    side = max(params.sigma, math.sqrt(wx * wy / n))
    ncx = max(1, int(wx / side))
    ncy = max(1, int(wy / side))
    head = np.full(ncx * ncy, -1, dtype=np.int64)
    nxt = np.full(n, -1, dtype=np.int64)
    placed, tries = 0, 0
    while placed < n:
        batch = max(1024, 2 * (n - placed))
        placed = _place_random(g.random((batch, 2)), pos, placed, params.sigma, x0, wx, y0, wy,
                               yper, wx / ncx, wy / ncy, ncx, ncy, head, nxt)
        tries += batch
        if tries > 200 * n + 10**6:
            raise UserInputError(
                f"Random placement of {n} discs at initial packing fraction "
                f"{params.phi * params.expansion:g} did not finish; lower phi or expansion.")
    return pos
