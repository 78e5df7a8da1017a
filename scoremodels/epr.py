"""Entropy production rates from a trained score network (``scoremodels epr``).

For dX = b dt + √(2D) dW with every variable even under time reversal (the anchor's
convention: propulsion θ or g even), the probability-flow velocity is v = b − D s
(s = ∇ log ρ, the learned score) and the EPR is

    Σ̇ = E[vᵀ D⁻¹ v] = E[∇·v + vᵀ D⁻¹ b],   ∇·v = ∇·b − tr(D ∇s)

(integration by parts, E[v·s] = −E[∇·v] block by block), both forms evaluated per
particle ("local EPR"): ``epr_local`` = v_iᵀ D⁻¹ v_i (≥ 0) and ``epr_local_div`` =
∇_i·v_i + v_iᵀ D_i⁻¹ b_i (pointwise values may be negative; equal mean). In a propulsion
sector the second term vanishes (θ: b_θ = 0) or has zero mean (g: b_g = −γg), leaving
the anchor's per-particle map ∇_g·v_g. Each
particle's block is its own state (x_i and θ_i or g_i; one copy's d-vector for the
linear model). Units: per particle per model time unit (k_B = 1).

Hypoelliptic systems (D_t = 0: noiseless positions) have an infinite all-variables EPR;
the propulsion sector alone (Σ̇_g = γ⁻¹E|v_g|², the anchor's MIPS quantity) is finite
and is what ``sector = propulsion`` computes. Asking for the full EPR of such a system
is refused.

Totals are frame averages of the per-particle mean with block-bootstrap standard errors
(contiguous blocks of frames, since snapshots are correlated).

**Score-free certificate.** For any trial velocity v (learned) and the true v*,
E[vᵀD⁻¹v*] = E[vᵀD⁻¹b − v·s*] = E[vᵀD⁻¹b + ∇·v] = Σ̇_div (by parts; s* is never needed),
so wherever the exact total Σ̇* is known score-free (every ABP/AOUP file, hypoelliptic
or not, and the linear model's closed form)

    ε_v = E[(v − v*)ᵀ D⁻¹ (v − v*)] / Σ̇* = (Σ̇_sq − 2 Σ̇_div + Σ̇*) / Σ̇*   (≥ 0)

is the learned field's relative mean-square error, and Σ̇* ≥ 2Σ̇_div − Σ̇_sq (and
≥ Σ̇_div²/Σ̇_sq when Σ̇_div > 0, Cauchy–Schwarz) bounds the exact rate from below.
``estimate`` writes both; a learned map with ε_v > ``CERTIFICATE_THRESHOLD`` (0.2) is
not a measurement. The identity holds for the SDE: an Euler–Maruyama chain samples a
density off by O(κ dt) (a trap's chain has Σ̇_g = κ(1 − κdt/2) per dimension), so a
validation needs dt·κ_max ≲ 0.02 or a bias budget of κ_max dt/2.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from simcore._errors import UserInputError
from simcore._progress import progress
from scoremodels import data as sdata
from scoremodels.adapters import PARTICLES, STATE_VECTORS, Adapter
from scoremodels.certificate import (block_bootstrap, closed_form_epr,
                                     exact_reference, write_certificate)

CONVENTION = ("all variables even under time reversal (propulsion theta or g even, the "
              "convention of Boffi & Vanden-Eijnden 2024); v = b - D s; local EPR "
              "v^T D^-1 v and div v + v^T D^-1 b; per particle per model time unit, k_B = 1")
CLASSES = ["dense", "interface", "dilute"]
def _check_sector(adapter: Adapter, sector: str, run_dims) -> tuple:
    D = adapter.diffusion
    if sector == "full":
        if adapter.x_dims and np.any(np.diag(D)[list(adapter.x_dims)] == 0):
            raise UserInputError(
                "This system's positions are noiseless (D_t = 0), so the EPR of all "
                "variables, each even under time reversal, is infinite (hypoelliptic "
                "dynamics: the drift of x is not in the range of the noise). Ask for the "
                "propulsion sector instead (--sector propulsion), the anchor's MIPS quantity.")
        if np.linalg.matrix_rank(D) < D.shape[0]:
            raise UserInputError(
                "The diffusion matrix D of this linear system is singular (hypoelliptic), "
                "so the all-even EPR is infinite in general; scoremodels refuses to estimate it.")
    dims = adapter.sector_dims(sector)
    if not set(dims) <= set(run_dims):
        raise UserInputError(f"The network was trained on score dimensions {list(run_dims)} "
                             f"but sector {sector!r} needs {list(dims)}; retrain with "
                             f"--sector {sector}.")
    return dims


def _pair_divergence(frame_raw, adapter, f):
    """μ ∇_i·F_i of the pair forces (trap included) of frame f, from simcore."""
    from scoremodels.adapters import force_divergence

    return force_divergence(frame_raw, adapter, f)


def estimate(run_dir, paths, out, sector: str = "auto", burn_in: float = 0.2,
             stride: int = 1, max_frames: int | None = None, batch_particles: int = 4096,
             memory_budget_mb: float = 512.0, grid: int = 32, n_blocks: int = 10,
             use_ema: bool = True, exact: bool = True, overwrite: bool = False,
             quiet: bool = True) -> dict:
    """Per-particle EPR of the trajectories ``paths`` with the network of ``run_dir``;
    write ``out`` (NetCDF) atomically and return the totals.

    ``batch_particles`` bounds the particles evaluated at once (memory ∝ it × K);
    ``memory_budget_mb`` bounds the frames read at once. Totals are per particle per
    time unit (1/time); where the exact score-free total is known the result (and the
    file) also holds the certificate ``epr_certificate`` (ε_v, dimensionless) with its
    error, ``epr_lower_bound`` / ``epr_lower_bound_cs`` (1/time) and
    ``certificate_passed`` (see :func:`certificate`).
    """
    import jax
    import jax.numpy as jnp
    import netCDF4
    from scoremodels.losses import _ctx, score_and_jacobian
    from scoremodels.rundir import load_run

    from scoremodels._validate import check_epr_options

    check_epr_options(burn_in=burn_in, stride=stride, max_frames=max_frames,
                      batch_particles=batch_particles, memory_budget_mb=memory_budget_mb,
                      grid=grid)
    from simcore.io.outputs import check_new_output

    out = Path(out)
    check_new_output(out, overwrite, inputs=[*([paths] if isinstance(paths, (str, Path))
                                                 else paths), run_dir], example="epr.nc")
    model, record = load_run(run_dir, use_ema=use_ema)
    run_adapter = Adapter.from_json(json.dumps(record["adapter"]))
    tset = sdata.TrajectorySet(paths)
    tmp = out.with_name(out.name + ".part")
    try:
        a = tset.adapter
        if (a.layout, a.prop_kind, a.state_dim) != (run_adapter.layout, run_adapter.prop_kind,
                                                    run_adapter.state_dim):
            raise UserInputError(
                f"The network in {run_dir} was trained on {run_adapter.layout} data "
                f"({run_adapter.prop_kind or 'no'} propulsion, {run_adapter.state_dim} "
                f"components), but {tset.paths[0]} holds {a.layout} ({a.prop_kind or 'no'} "
                f"propulsion, {a.state_dim} components).")
        if a.layout == STATE_VECTORS and not np.allclose(a.diffusion, run_adapter.diffusion):
            raise UserInputError("The trajectory's D differs from the training data's.")
        run_dims = tuple(record["score_dims"])
        if sector == "auto":
            sector = record["sector"]
        dims = _check_sector(a, sector, run_dims)
        pick = np.array([run_dims.index(d) for d in dims])
        D = a.diffusion[np.ix_(dims, dims)]
        Dinv = np.linalg.inv(D)
        net = record["net"]
        K, cutoff = net["neighbours"], net["cutoff"]
        log_sigma = float(np.log(min(record["objective"]["sigmas"])))
        start = int(math.floor(burn_in * len(tset)))
        frames = np.arange(start, len(tset), stride)
        if max_frames is not None:
            frames = frames[:max_frames]
        if len(frames) == 0:
            raise UserInputError("No frames left after the burn-in; lower --burn-in.")
        N = a.n_atoms
        bp = int(max(1, min(batch_particles, N)))
        _check_epr_memory(tset, a, K, N, len(frames), memory_budget_mb, len(run_dims), net, bp)

        @jax.jit
        def evaluate(batch):
            ctx = _ctx(batch)
            ls = jnp.full((batch["y"].shape[0],), log_sigma, batch["y"].dtype)
            s, J = score_and_jacobian(model, batch["y"], ctx, ls, run_dims)
            return s[:, pick], J[:, pick][:, :, pick]

        local = a.layout == PARTICLES
        spatial = 2 if local else len(dims)
        x_in = [k for k, d in enumerate(dims) if d in a.x_dims]
        p_in = [k for k, d in enumerate(dims) if d in a.p_dims]
        nc = netCDF4.Dataset(tmp, "w", format="NETCDF4")
        nc.createDimension("frame", None)
        nc.createDimension("atom", N)
        nc.createDimension("spatial", spatial)
        v_time = nc.createVariable("time", "f8", ("frame",))
        v_time.units = "model time"
        # the trajectories' index coordinates (issue 15): frame = the source frame
        v_frame = nc.createVariable("frame", "i4", ("frame",))
        v_frame.long_name = "frame index in the source trajectory"
        nc.createVariable("atom", "i4", ("atom",))[:] = np.arange(N, dtype=np.int32)
        chunk = (1, N)
        v_loc = nc.createVariable("epr_local", "f4", ("frame", "atom"), zlib=True, chunksizes=chunk)
        v_div = nc.createVariable("epr_local_div", "f4", ("frame", "atom"), zlib=True,
                                  chunksizes=chunk)
        v_vel = nc.createVariable("velocity_flow", "f4", ("frame", "atom", "spatial"), zlib=True,
                                  chunksizes=(1, N, spatial))
        v_loc.units = v_div.units = "1/time"
        v_loc.long_name = "local EPR v_i^T D^-1 v_i (per particle)"
        v_div.long_name = "local EPR in divergence form div_i v_i + v_i^T D^-1 b_i (per particle)"
        v_vel.long_name = ("probability-flow velocity v = b - D s of the positions (linear "
                           "model: of all components; harmonic AOUP network: of g)")
        v_vel.units = "length/time"
        v_velp = None
        if local:
            nc.createDimension("propulsion_component", a.prop_dim)
            v_velp = nc.createVariable("velocity_flow_propulsion", "f4",
                                       ("frame", "atom", "propulsion_component"), zlib=True,
                                       chunksizes=(1, N, a.prop_dim))
            v_velp.long_name = "probability-flow velocity of the propulsion state (theta or g)"
        series, series_div = [], []
        if local:
            L = a.box
            gsum = np.zeros((grid, grid))
            gcnt = np.zeros((grid, grid))
            csum = np.zeros(3)
            ccnt = np.zeros(3)
        budget = int(memory_budget_mb * 2 ** 20)
        per_frame = tset.bytes_per_frame + N * sdata.sample_bytes(a, K)
        fpc = int(max(1, min(len(frames), budget // per_frame)))
        bar = progress(len(frames), unit="frame", desc="epr", quiet=quiet)
        row = 0
        for c0 in range(0, len(frames), fpc):
            idx = frames[c0:c0 + fpc]
            raw = tset.read(idx)
            times = tset.times(idx)
            for f in range(len(idx)):
                one = {k: v[f:f + 1] for k, v in raw.items()}
                smp = sdata.frame_samples(one, a, K, cutoff)
                if a.layout == STATE_VECTORS:
                    divb = np.full(N, -float(np.trace(np.asarray(a.params["B"], float))))
                else:
                    divb = np.zeros(N)
                    if 0 in dims:
                        divb += _pair_divergence(raw, a, f)
                    if a.prop_kind == "vector" and 2 in dims:
                        divb += -2 * a.params["gamma"]
                s = np.empty((N, len(dims)))
                J = np.empty((N, len(dims), len(dims)))
                for i0 in range(0, N, bp):
                    part = {k: v[i0:i0 + bp] for k, v in smp.items()}
                    m = len(part["y"])
                    if m < bp:  # pad to one compiled shape
                        part = {k: np.concatenate([v, np.repeat(v[-1:], bp - m, 0)])
                                for k, v in part.items()}
                    si, Ji = evaluate(part)
                    s[i0:i0 + m] = np.asarray(si)[:m]
                    J[i0:i0 + m] = np.asarray(Ji)[:m]
                b = smp["drift"][:, list(dims)].astype(np.float64)
                v = b - s @ D.T
                pi = np.einsum("bi,ij,bj->b", v, Dinv, v)
                pdiv = divb - np.einsum("kl,blk->b", D, J) + np.einsum("bi,ij,bj->b", v, Dinv, b)
                v_time[row] = times[f]
                v_frame[row] = int(idx[f])
                v_loc[row] = pi
                v_div[row] = pdiv
                if local:
                    vx = v[:, x_in] if x_in else smp["drift"][:, :2]
                    v_vel[row] = vx
                    vp = np.zeros((N, a.prop_dim))
                    if p_in:
                        vp[:] = v[:, p_in]
                    v_velp[row] = vp
                    pos = one["pos"][0]
                    ij = np.minimum((pos / L * grid).astype(int), grid - 1)
                    np.add.at(gsum, (ij[:, 1], ij[:, 0]), pi)
                    np.add.at(gcnt, (ij[:, 1], ij[:, 0]), 1)
                    _, _, cnt = sdata.neighbourhoods(pos, L, 8, 1.2 * a.particle_diameter)
                    cls = np.where(cnt >= 5, 0, np.where(cnt <= 2, 2, 1))
                    np.add.at(csum, cls, pi)
                    np.add.at(ccnt, cls, 1)
                else:
                    v_vel[row] = v
                series.append(pi.mean())
                series_div.append(pdiv.mean())
                row += 1
                bar.update(1)
        bar.close()
        tot, err = block_bootstrap(series, n_blocks)
        tot_d, err_d = block_bootstrap(series_div, n_blocks)
        result = {"epr_total": tot, "epr_total_err": err, "epr_total_div": tot_d,
                  "epr_total_div_err": err_d, "frames": len(series), "sector": sector}
        nc.createDimension("frame_used", len(series))

        def scalar(name, value, long_name):
            var = nc.createVariable(name, "f8", ())
            var[...] = value
            var.units = "1/time"
            var.long_name = long_name

        scalar("epr_total", tot, "mean local EPR v^T D^-1 v per particle (frame average)")
        scalar("epr_total_err", err, "block-bootstrap standard error of epr_total")
        scalar("epr_total_div", tot_d, "mean of epr_local_div per particle")
        scalar("epr_total_div_err", err_d, "block-bootstrap standard error of epr_total_div")
        ser = nc.createVariable("epr_series", "f8", ("frame",))
        ser[:] = np.asarray(series)
        for var in nc.variables.values():
            if var.dimensions[:1] == ("frame",) and var.name not in ("time", "frame"):
                var.coordinates = "time"  # xarray opens time as a coordinate on frame
        ser.long_name = "per-frame particle mean of epr_local"
        ser.units = "1/time"
        ser = nc.createVariable("epr_series_div", "f8", ("frame",))
        ser[:] = np.asarray(series_div)
        ser.long_name = "per-frame particle mean of epr_local_div"
        ser.units = "1/time"
        if exact:
            kind = None
            ref = exact_reference(tset, a, frames, sector)
            if ref is not None:
                series_ex, how = ref
                te, ee = block_bootstrap(series_ex, n_blocks) if np.ndim(series_ex) else (
                    float(series_ex), 0.0)
                kind = "sampled" if np.ndim(series_ex) else "closed form"
                scalar("epr_exact_total", te, (
                    f"score-free EPR per particle sampled on the same frames ({how}): exact "
                    "in expectation, with sampling error" if kind == "sampled" else
                    f"exact EPR per particle ({how})"))
                nc["epr_exact_total"].method = kind
                scalar("epr_exact_total_err", ee, "block-bootstrap standard error"
                       + (" (0: a closed form)" if kind == "closed form" else ""))
                result.update(epr_exact_total=te, epr_exact_total_err=ee, epr_exact_method=kind)
                result.update(write_certificate(nc, series, series_div, series_ex, te,
                                                 n_blocks))
            closed = closed_form_epr(a, sector)
            if closed is not None and not (ref is not None and kind == "closed form"):
                scalar("epr_closed_form", closed[0], f"closed-form EPR per particle of the "
                       f"model ({closed[1]})")
                result.update(epr_closed_form=closed[0], epr_closed_form_how=closed[1])
        if local:
            nc.createDimension("grid_y", grid)
            nc.createDimension("grid_x", grid)
            gm = nc.createVariable("epr_map", "f8", ("grid_y", "grid_x"))
            gm[:] = np.where(gcnt > 0, gsum / np.maximum(gcnt, 1), np.nan)
            gm.long_name = "mean local EPR per particle on a grid over the box (frame average)"
            gm.units = "1/time"
            if "certificate_passed" in result:
                gm.certificate_passed = "yes" if result["certificate_passed"] else "no"
            for name, dim in (("grid_x", "grid_x"), ("grid_y", "grid_y")):
                cv = nc.createVariable(name, "f8", (dim,))
                cv[:] = (np.arange(grid) + 0.5) * L / grid
                cv.units = "length"
            nc.createDimension("phase_class", 3)
            cm = nc.createVariable("epr_class_mean", "f8", ("phase_class",))
            cm[:] = np.where(ccnt > 0, csum / np.maximum(ccnt, 1), np.nan)
            cm.long_name = ("mean local EPR of dense (>= 5 neighbours within 1.2 diameters), "
                            "interface and dilute (<= 2) particles")
            cm.classes = ",".join(CLASSES)
            cf = nc.createVariable("class_fraction", "f8", ("phase_class",))
            cf[:] = ccnt / max(ccnt.sum(), 1)
            cf.classes = ",".join(CLASSES)
            result["epr_class_mean"] = dict(zip(CLASSES, cm[:].tolist()))
        nc.epr_convention = CONVENTION
        nc.sector = sector
        nc.score_dimensions = json.dumps(list(dims))
        nc.diffusion = json.dumps(D.tolist())
        nc.run_dir = str(Path(run_dir).resolve())
        nc.trajectories = json.dumps([str(p) for p in tset.paths])
        nc.checkpoint_step = record["checkpoint_step"]
        nc.ema_weights = int(use_ema)
        nc.time_unit = "model time unit of the trajectory"
        nc.program = "scoremodels"
        nc.close()
        os.replace(tmp, out)
        return result
    except BaseException as exc:
        try:
            nc.close()  # noqa: F821
        except Exception:  # noqa: BLE001
            pass
        tmp.unlink(missing_ok=True)
        _raise_if_write_failed(exc, out, tmp)
        raise
    finally:
        tset.close()


def _raise_if_write_failed(exc, out: Path, tmp: Path) -> None:
    """A failed write of the output (full disk, quota, permissions: an OSError about the
    output file, or a NetCDF library error while that file system is full) is a
    UserInputError; anything else is left alone."""
    from simcore.io.write_errors import SPACE_ERRNOS, output_error

    if isinstance(exc, OSError) and (exc.errno in SPACE_ERRNOS or (
            exc.filename is not None and Path(exc.filename).name in (out.name, tmp.name))):
        raise output_error(out, exc) from None
    if isinstance(exc, RuntimeError) and str(exc).startswith("NetCDF"):
        import shutil

        try:
            full = shutil.disk_usage(out.parent).free < 2 ** 20
        except OSError:
            full = False
        if full:
            raise output_error(out, exc) from None


def _check_epr_memory(tset, a, K, N, n_frames, memory_budget_mb, state_dim, net, bp):
    """Refuse (UserInputError) an inference that would not fit in the available memory."""
    from simcore._memory import check_memory, epr_bytes

    per_frame = tset.bytes_per_frame + N * sdata.sample_bytes(a, K)
    fpc = int(max(1, min(n_frames, int(memory_budget_mb * 2 ** 20) // per_frame)))
    check_memory(epr_bytes(N, per_frame, fpc, state_dim, K, net.get("width", 64),
                           net.get("depth", 2), bp),
                 f"scoremodels epr of {N} particles ({n_frames} frames, {bp} particles per "
                 "batch)",
                 "Lower --batch-particles (network memory) or --memory-budget (frames read "
                 "at once), or run on a node with more memory.")
