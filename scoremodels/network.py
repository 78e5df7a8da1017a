"""Harmonic networks of hypoelliptic AOUPs, stored as `linear` simcore files (issue 13 (B)).

A network of N active Ornstein–Uhlenbeck particles in 2D joined by harmonic springs
(tethers and pair springs, any symmetric positive-definite stiffness; A = μ × the
Hessian of the network's energy, rates 1/time) with noiseless positions (D_t = 0)::

    du = (v0 g − A u) dt,      dg = −γ g dt + √(2γ) dη

is a linear SDE dx = −Bx dt + √(2D) dW in x = (u, g), 4N components ordered
(u_1x, u_1y, …, u_Nx, u_Ny, g_1x, g_1y, …, g_Nx, g_Ny)::

    B = [[A, −v0 I], [0, γ I]],      D = diag(0, γ I)

(:func:`aoup_network`). simcore's ``linear`` model integrates it exactly (any dt, no
Euler–Maruyama bias) from exact stationary samples. ``scoremodels`` recognises the
structure (:func:`detect`) and views every copy as N particles: particle i of copy c
is sample c·N + i with own state (u_i, g_i), its graph neighbours (the j with A_ij ≠ 0,
strongest first) and the blocks of A, so the pinned g-score network
(:class:`scoremodels.nets.PinnedScore`, potential kind ``"network"``) reads the
stiffness from the data instead of a pair potential.

Closed forms (g sector, k_B = 1, per model time unit): Σ̇_g = tr A per copy, and the
exact score's local EPR has per-particle mean tr A_ii (= −μ∇ᵢ·Fᵢ).
"""

from __future__ import annotations

import numpy as np

from simcore._errors import UserInputError

#: the sample layout of a network file (:class:`scoremodels.adapters.Adapter`)
LAYOUT = "spring_network"


def aoup_network(A, v0: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """(B, D) of the AOUP network with stiffness matrix ``A`` (2N × 2N, rates 1/time,
    symmetric positive definite), propulsion speed ``v0`` (length/time) and OU rate
    ``gamma`` (1/time), in the component order of the module docstring."""
    A = np.asarray(A, dtype=float)
    n2 = A.shape[0]
    if A.shape != (n2, n2) or n2 % 2:
        raise ValueError("A must be a square matrix of even size 2N")
    B = np.zeros((2 * n2, 2 * n2))
    B[:n2, :n2] = A
    B[:n2, n2:] = -v0 * np.eye(n2)
    B[n2:, n2:] = gamma * np.eye(n2)
    D = np.zeros_like(B)
    D[n2:, n2:] = gamma * np.eye(n2)
    return B, D


def detect(record: dict) -> dict | None:
    """``{"A", "v0", "gamma", "n_particles"}`` when the linear run ``record`` (its B and D)
    is an AOUP network as in :func:`aoup_network` (exactly: D = diag(0, γI), B's blocks
    [[A, −v0 I], [0, γI]] with A symmetric, v0 > 0), else None."""
    B = np.asarray(record.get("B"), dtype=float)
    D = np.asarray(record.get("D"), dtype=float)
    if B.ndim != 2 or B.shape[0] % 4 or B.shape != D.shape:
        return None
    n2 = B.shape[0] // 2
    gamma = D[n2, n2]
    v0 = -B[0, n2]
    if not (gamma > 0 and v0 > 0):
        return None
    eye = np.eye(n2)
    A = B[:n2, :n2]
    ok = (np.array_equal(D[:n2], np.zeros_like(D[:n2])) and np.array_equal(D[n2:, :n2], 0 * eye)
          and np.array_equal(D[n2:, n2:], gamma * eye)
          and np.array_equal(B[:n2, n2:], -v0 * eye) and not B[n2:, :n2].any()
          and np.array_equal(B[n2:, n2:], gamma * eye) and np.array_equal(A, A.T))
    return {"A": A, "v0": float(v0), "gamma": float(gamma), "n_particles": n2 // 2} if ok else None


def adapter(record: dict, n_copies: int, info: dict):
    """The :class:`scoremodels.adapters.Adapter` of the particle view: a frame holds
    n_copies × N particles with state (u, g), D = diag(0, 0, γ, γ)."""
    from scoremodels.adapters import Adapter

    g = info["gamma"]
    params = dict(record, gamma=g, v0=info["v0"], mu=1.0, kappa=0.0, potential="network",
                  network_particles=info["n_particles"])
    return Adapter(layout=LAYOUT, state_dim=4, x_dims=(0, 1), p_dims=(2, 3),
                   prop_kind="vector", diffusion=np.diag([0.0, 0.0, g, g]), local=True,
                   n_atoms=n_copies * info["n_particles"], params=params, interacting=True)


def blocks(params: dict):
    """(A, N, neighbour table (N, Kmax) with −1 padding, strongest coupling first)."""
    B = np.asarray(params["B"], dtype=float)
    N = int(params["network_particles"])
    A = B[:2 * N, :2 * N]
    Ab = A.reshape(N, 2, N, 2).transpose(0, 2, 1, 3)           # (i, j, 2, 2) = A_ij
    strength = np.sqrt((Ab ** 2).sum((2, 3)))
    np.fill_diagonal(strength, 0.0)
    deg = (strength > 0).sum(1)
    kmax = max(int(deg.max()), 1)
    order = np.argsort(-strength, axis=1, kind="stable")[:, :kmax]
    table = np.where(np.take_along_axis(strength, order, 1) > 0, order, -1)
    return Ab, N, table


def frame_samples(frames: dict, a, k: int, particles=None) -> dict[str, np.ndarray]:
    """Per-particle samples of network frames (``frames["x"]``, ``frames["drift"]`` of
    shape (F, copies, 4N)) in the layout of :func:`scoremodels.data.frame_samples`, plus
    ``nb_hess`` (K, 2, 2) = −A_ij of each neighbour and ``self_hess`` (2, 2) = A_ii
    (1/time). Refuses a K below the largest number of springs of a particle."""
    Ab, N, table = blocks(a.params)
    if table.shape[1] > k:
        raise UserInputError(f"A particle of this network has {table.shape[1]} springs but the "
                             f"network sees {k} neighbours; the linear response would be "
                             f"truncated: pass --neighbours {table.shape[1]} or more.")
    x = np.asarray(frames["x"], dtype=np.float64)
    b = np.asarray(frames["drift"], dtype=np.float64)
    F, C = x.shape[:2]
    u = x[..., :2 * N].reshape(F, C, N, 2)
    g = x[..., 2 * N:4 * N].reshape(F, C, N, 2)
    bu = b[..., :2 * N].reshape(F, C, N, 2)
    bg = b[..., 2 * N:4 * N].reshape(F, C, N, 2)
    idx = np.full((N, k), -1, dtype=np.int64)
    idx[:, :table.shape[1]] = table
    valid = idx >= 0
    j = np.where(valid, idx, 0)
    m = valid[None, None, :, :, None]
    ii = np.arange(N)
    hess = np.where(valid[..., None, None], -Ab[ii[:, None], j], 0.0)     # (N, K, 2, 2)
    out = {"y": np.concatenate([np.zeros_like(g), g], -1), "drift": np.concatenate([bu, bg], -1),
           "pos": u, "nb_rel": (u[:, :, j] - u[:, :, :, None]) * m, "nb_p": g[:, :, j] * m,
           "nb_mask": np.broadcast_to(valid, (F, C, N, k)).astype(np.float64),
           "nb_bx": bu[:, :, j] * m,
           "nb_hess": np.broadcast_to(hess, (F, C, N, k, 2, 2)),
           "self_hess": np.broadcast_to(Ab[ii, ii], (F, C, N, 2, 2))}
    out = {key: v.reshape(F, C * N, *v.shape[3:]) for key, v in out.items()}
    if particles is not None:
        out = {key: v[:, np.asarray(particles)] for key, v in out.items()}
    return {key: np.ascontiguousarray(v.reshape(-1, *v.shape[2:]), dtype=np.float32)
            for key, v in out.items()}


def exact_epr_per_particle(params: dict) -> np.ndarray:
    """tr A_ii (1/time) of every particle: the exact local g-sector EPR's mean."""
    Ab, N, _ = blocks(params)
    return np.trace(Ab[np.arange(N), np.arange(N)], axis1=1, axis2=2)
