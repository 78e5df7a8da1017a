"""Closed-form results: the one home of every exact formula simcore and scoremodels test against.

The linear model's stationary law and EPR, the trapped active particles and the driven ring
(the benchmarks the exact and learned entropy-production estimators are checked against).

Conventions (those of Boffi & Vanden-Eijnden, PNAS 121, e2318106121 (2024); see
docs/scoremodels.md): k_B = 1; every variable (positions, propulsion vectors, angles) is **even**
under time reversal; overdamped dynamics dX = b(X) dt + √(2D) dW with score s = ∇log ρ,
probability-flow velocity v = b − D s and entropy production rate (EPR)

    Σ̇ = ⟨vᵀ D⁻¹ v⟩_ρ          (per unit model time; dimensionless "nats per time unit").

All rates are in inverse model time units (the time unit of the simulation that produced
the trajectory); lengths cancel. Totals are for the whole system described by the
matrices (one copy of the linear SDE, one particle for the traps and the ring).

Contents (numpy/scipy only; importing this module never imports JAX):

* linear (Ornstein–Uhlenbeck) SDE dx = −Bx dt + √(2D) dW: :func:`stationary_covariance`,
  :func:`ou_flow_matrix`, :func:`ou_score`, :func:`ou_velocity`, :func:`ou_local_epr`,
  :func:`ou_epr` (also for one block of coordinates, e.g. the hypoelliptic g-sector);
* named linear systems: :func:`rotational_ou` / :func:`rotational_ou_epr`,
  :func:`bead_spring` / :func:`bead_spring_epr`;
* active particles in a harmonic trap: :func:`trapped_aoup_covariance`,
  :func:`trapped_aoup_epr`, :func:`trapped_abp_moments`, :func:`trapped_abp_epr`;
* a driven particle on a ring: :func:`ring_current`, :func:`ring_density`, :func:`ring_epr`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "stationary_covariance", "ou_flow_matrix", "ou_score", "ou_velocity", "ou_local_epr",
    "ou_epr", "rotational_ou", "rotational_ou_epr", "bead_spring", "bead_spring_epr",
    "trapped_aoup_covariance", "trapped_aoup_epr", "trapped_abp_moments", "trapped_abp_epr",
    "ring_current", "ring_density", "ring_epr",
]


# ----------------------------------------------------------------------------- linear SDE
def _check_BD(B, D) -> tuple[np.ndarray, np.ndarray]:
    B = np.atleast_2d(np.asarray(B, dtype=float))
    D = np.atleast_2d(np.asarray(D, dtype=float))
    if B.ndim != 2 or B.shape[0] != B.shape[1]:
        raise ValueError(f"B must be a square matrix (got shape {B.shape})")
    if D.shape != B.shape:
        raise ValueError(f"D must have the shape of B {B.shape} (got {D.shape})")
    scale = max(float(np.abs(D).max()), 1e-300)
    if np.abs(D - D.T).max() > 1e-12 * scale:
        raise ValueError("D must be symmetric")
    if np.linalg.eigvalsh(D).min() < -1e-12 * scale:
        raise ValueError("D must be positive semi-definite")
    if np.linalg.eigvals(B).real.min() <= 0:
        raise ValueError("every eigenvalue of B must have a positive real part "
                         "(otherwise there is no stationary state)")
    return B, 0.5 * (D + D.T)


def stationary_covariance(B, D) -> np.ndarray:
    """Stationary covariance C of dx = −Bx dt + √(2D) dW (units of x²).

    The solution of the Lyapunov equation BC + CBᵀ = 2D; the stationary density is
    N(0, C). B: rates (1/time), D: diffusion matrix (x²/time).
    """
    from scipy.linalg import solve_continuous_lyapunov

    B, D = _check_BD(B, D)
    C = solve_continuous_lyapunov(B, 2.0 * D)
    return 0.5 * (C + C.T)


def _inverse_covariance(C) -> np.ndarray:
    if np.linalg.matrix_rank(C) < C.shape[0]:
        raise ValueError("the stationary covariance is singular (the noise does not reach every "
                         "coordinate), so the stationary density and its score do not exist")
    return np.linalg.inv(C)


def ou_flow_matrix(B, D) -> np.ndarray:
    """M with probability-flow velocity v(x) = −M x, M = B − D C⁻¹ = Q C⁻¹ (rate units).

    Q = BC − D is antisymmetric, so M = 0 exactly when the process is reversible.
    """
    B, D = _check_BD(B, D)
    return B - D @ _inverse_covariance(stationary_covariance(B, D))


def ou_score(x, B, D) -> np.ndarray:
    """Stationary score s(x) = ∇log ρ = −C⁻¹ x for points ``x`` of shape (..., d) (units 1/x)."""
    Cinv = _inverse_covariance(stationary_covariance(B, D))
    return -np.asarray(x, dtype=float) @ Cinv.T


def ou_velocity(x, B, D) -> np.ndarray:
    """Probability-flow velocity v(x) = −Bx − D s(x) = −M x for x of shape (..., d) (x/time)."""
    return -np.asarray(x, dtype=float) @ ou_flow_matrix(B, D).T


def ou_local_epr(x, B, D) -> np.ndarray:
    """Local EPR density π(x) = v(x)ᵀ D⁻¹ v(x) (1/time) for x of shape (..., d); its
    stationary mean is :func:`ou_epr`. Needs D positive definite."""
    B, D = _check_BD(B, D)
    v = ou_velocity(x, B, D)
    return np.einsum("...i,ij,...j->...", v, np.linalg.inv(D), v)


def ou_epr(B, D, coordinates: Sequence[int] | None = None) -> float:
    """Total EPR (1/time) of dx = −Bx dt + √(2D) dW at stationarity.

    Σ̇ = ⟨vᵀ D⁻¹ v⟩ = tr(Bᵀ D⁻¹ B C) − tr B, with C from :func:`stationary_covariance`.

    ``coordinates``: restrict the sum to a block S of coordinates (the "sector" EPR
    ⟨v_Sᵀ D_SS⁻¹ v_S⟩, e.g. the g-sector of a hypoelliptic AOUP); D must not couple S to
    the other coordinates and D_SS must be invertible.

    Singular D (full sum): the all-even EPR is finite only when v lies in the range of D
    (then computed with the pseudo-inverse); otherwise ``math.inf`` is returned.
    """
    B, D = _check_BD(B, D)
    C = stationary_covariance(B, D)
    M = B - D @ _inverse_covariance(C)
    d = len(B)
    if coordinates is not None:
        S = np.asarray(sorted(set(int(i) for i in coordinates)), dtype=int)
        if S.size == 0 or S.min() < 0 or S.max() >= d:
            raise ValueError(f"coordinates must be indices in 0..{d - 1}")
        rest = np.setdiff1d(np.arange(d), S)
        if rest.size and np.abs(D[np.ix_(S, rest)]).max() > 0:
            raise ValueError("D couples the chosen coordinates to the others; the sector EPR "
                             "is only defined for a block-diagonal D")
        DS = D[np.ix_(S, S)]
        if np.linalg.eigvalsh(DS).min() <= 0:
            raise ValueError("D restricted to the chosen coordinates must be positive definite")
        MS = M[S]
        return float(np.trace(MS.T @ np.linalg.inv(DS) @ MS @ C))
    if np.linalg.eigvalsh(D).min() > 1e-12 * np.abs(D).max():
        return float(np.trace(M.T @ np.linalg.inv(D) @ M @ C))
    Dp = np.linalg.pinv(D, hermitian=True)
    if np.abs((np.eye(d) - D @ Dp) @ M).max() > 1e-9 * max(1.0, np.abs(M).max()):
        return math.inf
    return float(np.trace(M.T @ Dp @ M @ C))


# ----------------------------------------------------------------------------- named systems
def rotational_ou(kappa: float, omega: float, T: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(B, D) of the 2D rotational OU process: B = [[κ, −ω], [ω, κ]], D = T I.

    κ: relaxation rate, ω: rotation rate (1/time), T: temperature (diffusion, x²/time).
    """
    B = np.array([[kappa, -omega], [omega, kappa]], dtype=float)
    return B, float(T) * np.eye(2)


def rotational_ou_epr(kappa: float, omega: float, T: float = 1.0) -> float:
    """Σ̇ = 2ω²/κ (1/time) of :func:`rotational_ou`; independent of T (κ = 1.3, ω = 0.7 →
    0.753846)."""
    if kappa <= 0 or T <= 0:
        raise ValueError("kappa and T must be positive")
    return 2.0 * omega ** 2 / kappa


def bead_spring(n_beads: int, T1: float, T2: float, k: float = 1.0,
                gamma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(B, D) of the bead-spring chain of Li et al. (Nat. Commun. 10, 1666, 2019).

    ``n_beads`` beads in a line, springs of stiffness k between neighbours and from the end
    beads to fixed walls, friction γ_f = ``gamma``; bead i in a bath at temperature T_i,
    linear from T₁ to T₂: B = tridiag(−1, 2, −1) k/γ_f, D = diag(T_i)/γ_f.
    """
    if n_beads < 1:
        raise ValueError("n_beads must be at least 1")
    B = (2.0 * np.eye(n_beads) - np.eye(n_beads, k=1) - np.eye(n_beads, k=-1)) * k / gamma
    D = np.diag(np.linspace(T1, T2, n_beads)) / gamma
    return B, D


def bead_spring_epr(n_beads: int, T1: float, T2: float, k: float = 1.0,
                    gamma: float = 1.0) -> float:
    """Total EPR (1/time) of :func:`bead_spring`.

    Closed forms for 2 beads, k(T₁ − T₂)²/(4γT₁T₂) (T₁ = 10, T₂ = 1 → 2.025), and 5 beads,
    k(T₁−T₂)²(111T₁² + 430T₁T₂ + 111T₂²)/[495γT₁T₂(3T₁+T₂)(T₁+3T₂)] (→ 0.629817279495);
    other chain lengths via the Lyapunov solution (:func:`ou_epr`).
    """
    if min(T1, T2) <= 0 or k <= 0 or gamma <= 0:
        raise ValueError("T1, T2, k and gamma must be positive")
    if n_beads == 2:
        return k * (T1 - T2) ** 2 / (4.0 * gamma * T1 * T2)
    if n_beads == 5:
        return (k * (T1 - T2) ** 2 * (111 * T1 ** 2 + 430 * T1 * T2 + 111 * T2 ** 2)
                / (495 * gamma * T1 * T2 * (3 * T1 + T2) * (T1 + 3 * T2)))
    return ou_epr(*bead_spring(n_beads, T1, T2, k, gamma))


# ----------------------------------------------------------------------------- traps
def _aoup_matrices(v0, D_t, gamma, kappa):
    """Per-dimension (x, g) linear system of the trapped AOUP."""
    B = np.array([[kappa, -v0], [0.0, gamma]], dtype=float)
    D = np.diag([D_t, gamma]).astype(float)
    return B, D


def trapped_aoup_covariance(v0: float, D_t: float, gamma: float, kappa: float) -> np.ndarray:
    """Stationary covariance of (x, g), per dimension, of the AOUP in a harmonic trap.

    dx = (v0 g − κx) dt + √(2D_t) dW, dg = −γg dt + √(2γ) dη (g dimensionless, v0 a speed):
    C_gg = 1, C_xg = v0/(κ+γ), C_xx = (D_t + v0²/(κ+γ))/κ.
    """
    if kappa <= 0 or gamma <= 0 or D_t < 0:
        raise ValueError("kappa and gamma must be positive and D_t non-negative")
    cxg = v0 / (kappa + gamma)
    return np.array([[(D_t + v0 * cxg) / kappa, cxg], [cxg, 1.0]])


def trapped_aoup_epr(v0: float, D_t: float, gamma: float, kappa: float, d: int = 1,
                     sector: str = "all") -> float:
    """EPR (1/time) of one AOUP in a harmonic trap (see :func:`trapped_aoup_covariance`).

    ``sector="all"`` (elliptic, D_t > 0; all variables even): Σ̇ = d v0² γ / [D_t (κ+γ)]
    (→ d v0²/D_t without trap); ``math.inf`` when D_t = 0 and v0 ≠ 0.
    ``sector="g"`` (the propulsion sector only, the anchor's hypoelliptic convention):
    Σ̇_g = ⟨|v_g|²⟩/γ; for D_t = 0 it equals d κ (independent of v0 and γ); for D_t > 0 it
    is computed from the 2×2 Lyapunov solution (0.49834 per dimension at v0 = 0.8,
    κ = 0.5, γ = 0.3, D_t = 1e−3).
    """
    trapped_aoup_covariance(v0, D_t, gamma, kappa)  # validates
    if sector == "all":
        if D_t == 0:
            return 0.0 if v0 == 0 else math.inf
        return d * v0 ** 2 * gamma / (D_t * (kappa + gamma))
    if sector == "g":
        if v0 == 0:
            return 0.0
        if D_t == 0:
            return float(d * kappa)
        return d * ou_epr(*_aoup_matrices(v0, D_t, gamma, kappa), coordinates=[1])
    raise ValueError(f"sector must be 'all' or 'g' (got {sector!r})")


def trapped_abp_moments(v0: float, D_t: float, D_r: float, kappa: float,
                        d: int = 2) -> dict[str, float]:
    """Stationary moments of one ABP in a harmonic trap in d dimensions.

    dx = (v0 n − κx) dt + √(2D_t) dW, n a unit vector diffusing on the sphere with D_r:
    ⟨n·x⟩ = v0/(κ + (d−1)D_r) (length), ⟨|x|²⟩ = v0²/[κ(κ + (d−1)D_r)] + d D_t/κ (length²).
    """
    if kappa <= 0 or D_r < 0 or D_t < 0 or d < 2:
        raise ValueError("kappa must be positive, D_t and D_r non-negative, d >= 2")
    rate = kappa + (d - 1) * D_r
    return {"n_dot_x": v0 / rate, "x2": v0 ** 2 / (kappa * rate) + d * D_t / kappa}


def trapped_abp_epr(v0: float, D_t: float, D_r: float, kappa: float, d: int = 2) -> float:
    """EPR (1/time) of one ABP in a harmonic trap, orientation even under time reversal.

    Σ̇ = ⟨|v0 n − κx|²⟩/D_t − dκ = (v0²/D_t) (d−1)D_r / (κ + (d−1)D_r)
    (2D, v0 = 1, κ = 0.7, D_t = 0.25, D_r = 0.4 → 1.454545). ``math.inf`` when D_t = 0 and
    v0 ≠ 0 (the all-even path measure is then singular).
    """
    trapped_abp_moments(v0, D_t, D_r, kappa, d)  # validates
    if v0 == 0:
        return 0.0
    if D_t == 0:
        return math.inf
    return v0 ** 2 / D_t * (d - 1) * D_r / (kappa + (d - 1) * D_r)


# ----------------------------------------------------------------------------- ring
@lru_cache(maxsize=8)
def _leggauss(n: int):
    return np.polynomial.legendre.leggauss(n)


def _ring_kernel(f, D, U0, potential, n_grid):
    """θ grid and K(θ) = e^{−U(θ)/D} ∫₀^{2π} e^{[U(θ+u) − f u]/D} du (Gauss–Legendre in u)."""
    if D <= 0:
        raise ValueError("D must be positive")
    U: Callable = potential if potential is not None else (lambda t: U0 * np.cos(t))
    theta = 2.0 * np.pi * np.arange(n_grid) / n_grid
    nodes, weights = _leggauss(n_grid // 2)
    u = np.pi * (nodes + 1.0)
    w = np.pi * weights
    Ut = np.asarray(U(theta), dtype=float)
    expo = (np.asarray(U(theta[:, None] + u[None, :]), dtype=float) - f * u[None, :]) / D
    shift = expo.max()
    K = np.exp(-Ut / D) * ((np.exp(expo - shift) * w).sum(1)) * np.exp(shift)
    return theta, K


def ring_current(f: float, D: float, U0: float = 0.0, *,
                 potential: Callable | None = None, n_grid: int = 256) -> float:
    """Stationary probability current J (1/time) of dθ = (f − U'(θ)) dt + √(2D) dW on the circle.

    U = U0 cos θ unless ``potential`` (a vectorised 2π-periodic callable) is given.
    J = D(1 − e^{−2πf/D}) / ∫₀^{2π} dθ e^{−Φ(θ)/D} ∫_θ^{θ+2π} e^{Φ(y)/D} dy, Φ = U − fθ
    (f = 1.3, U0 = 2, D = 0.7 → J = 0.063030). The periodic θ integral uses the trapezoid
    rule (spectrally accurate), the inner one Gauss–Legendre; ``n_grid`` sets both.
    """
    _, K = _ring_kernel(f, D, U0, potential, n_grid)
    return float(-D * math.expm1(-2.0 * math.pi * f / D) / (K.mean() * 2.0 * np.pi))


def ring_density(theta, f: float, D: float, U0: float = 0.0, *,
                 potential: Callable | None = None, n_grid: int = 256) -> np.ndarray:
    """Stationary density ρ(θ) (per radian, ∫ρ = 1) of the driven particle on the ring,
    evaluated at ``theta`` by trigonometric interpolation of the grid values."""
    grid, K = _ring_kernel(f, D, U0, potential, n_grid)
    coef = np.fft.rfft(K / (K.mean() * 2.0 * np.pi)) / n_grid
    t = np.asarray(theta, dtype=float)
    m = np.arange(coef.size)
    scale = np.where((m == 0) | ((n_grid % 2 == 0) & (m == n_grid // 2)), 1.0, 2.0)
    return np.real((scale * coef * np.exp(1j * m * t[..., None])).sum(-1))


def ring_epr(f: float, D: float, U0: float = 0.0, *, potential: Callable | None = None,
             n_grid: int = 256) -> float:
    """EPR (1/time) of the driven particle on a ring: Σ̇ = ∫ J²/(Dρ) dθ = 2πfJ/D.

    dθ = (f − U'(θ)) dt + √(2D) dW, U = U0 cos θ (or ``potential``); f is the constant
    torque, D the diffusion coefficient (rad²/time). U = 0 gives f²/D; f = 1.3, U0 = 2,
    D = 0.7 → 0.735487.
    """
    return 2.0 * math.pi * f * ring_current(f, D, U0, potential=potential, n_grid=n_grid) / D
