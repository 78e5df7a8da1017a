"""scoremodels, fast tier: data pipeline, network symmetries, divergences, checkpoints,
CLI and the 2-device sharding path (tiny networks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import simcore  # noqa: E402
from scoremodels import data as sdata  # noqa: E402
from scoremodels.cli import main  # noqa: E402
from scoremodels.losses import divergence, score_and_jacobian  # noqa: E402
from scoremodels.nets import NetConfig, build  # noqa: E402

from conftest import join_freeing_threads, open_descriptors  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def abp_file(tmp_path_factory):
    """A small interacting ABP trajectory (soft discs, 64 particles, 40 frames)."""
    out = tmp_path_factory.mktemp("sm") / "abp.nc"
    simcore.run("abp", seed=3, steps=800, write_every=20, out=out,
                overrides={"n": 64, "phi": 0.3, "potential": "soft_harmonic", "v0": 1.0,
                           "D_t": 0.2, "D_r": 0.5, "dt": 1e-2, "init": "uniform"})
    return out


def _ctx(smp):
    return {k: jnp.asarray(v) for k, v in smp.items() if k in ("nb_rel", "nb_p", "nb_mask", "pos")}


def _compiled(model):
    """``model``'s forward pass compiled whole: called op by op, JAX compiles each of the
    network's primitives separately (several times slower for these tests)."""
    return jax.jit(lambda y, ctx, ls: model(y, ctx, ls))


# ---------------------------------------------------------------------------- data
@pytest.mark.parametrize("cutoff", [None, 3.0])
def test_cell_list_neighbourhoods_equal_all_pairs(cutoff):
    g = np.random.default_rng(0)
    L, n, k = 20.0, 300, 12
    pos = g.random((n, 2)) * L
    idx, rel, count = sdata.neighbourhoods(pos, L, k, cutoff)
    d = pos[None, :, :] - pos[:, None, :]
    d -= L * np.round(d / L)
    r = np.sqrt((d ** 2).sum(-1))
    np.fill_diagonal(r, np.inf)
    for i in range(n):
        order = np.argsort(r[i])[:k]
        if cutoff is not None:
            order = order[r[i, order] < cutoff]
            assert count[i] == (r[i] < cutoff).sum()
        got = idx[i][idx[i] >= 0]
        np.testing.assert_array_equal(got, order)
        np.testing.assert_allclose(rel[i, :len(got)], d[i, got], atol=1e-12)
        np.testing.assert_allclose(np.sqrt((rel[i, :len(got)] ** 2).sum(-1)),
                                   np.sort(r[i, got]), atol=1e-12)


def test_time_block_split_is_disjoint_and_skips_burn_in():
    train, val = sdata.split_frames(100, burn_in=0.2, val_fraction=0.2, n_blocks=10)
    assert set(train).isdisjoint(val) and len(train) + len(val) == 80
    assert min(train.min(), val.min()) == 20 and val.max() == 99
    # validation frames form contiguous blocks of 8 frames
    assert len(val) == 16 and np.all(np.diff(val)[np.diff(val) != 1] > 1)


def test_memory_budget_bounds_every_read(abp_file, monkeypatch):
    tset = sdata.TrajectorySet(abp_file)
    blocks = []
    orig = tset._read_block

    def spy(h, a, k0, k1):
        blocks.append(k1 - k0)
        return orig(h, a, k0, k1)

    monkeypatch.setattr(tset, "_read_block", spy)
    train, _ = sdata.split_frames(len(tset), burn_in=0.0, val_fraction=0.0)
    K = 6
    per_frame = tset.bytes_per_frame + 64 * sdata.sample_bytes(tset.adapter, K)
    budget = 3 * per_frame + 1  # three frames fit, the file holds 41
    stream = sdata.BatchStream(tset, train, 32, K, None, seed=1, memory_budget=budget)
    assert stream.frames_per_chunk == 3
    seen = set()
    for step in range(6 * stream.steps_per_chunk):
        b = stream.batch(step)
        assert b["y"].shape == (32, 3) and b["nb_rel"].shape == (32, K, 2)
        seen.add(step // stream.steps_per_chunk)
    assert len(seen) == 6
    assert max(tset.reads) == 3 and max(blocks) <= 3 and len(tset) > 3
    # the same step gives the same batch (resumable order)
    again = sdata.BatchStream(tset, train, 32, K, None, seed=1, memory_budget=budget)
    np.testing.assert_array_equal(again.batch(5)["nb_rel"], stream.batch(5)["nb_rel"])
    tset.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")
def test_a_refused_trajectory_set_leaves_no_file_open(abp_file, tmp_path):
    """The files opened before the one refused (another system) are closed again."""
    other = tmp_path / "other.nc"
    simcore.run("abp", seed=3, steps=40, write_every=20, out=other, quiet=True,
                overrides={"n": 32, "phi": 0.3, "potential": "soft_harmonic"})
    join_freeing_threads()  # the run's replaced files close in threads meanwhile
    before = open_descriptors()
    with pytest.raises(simcore.UserInputError, match="holds a different system"):
        sdata.TrajectorySet([abp_file, abp_file, other])
    assert open_descriptors() == before


# ---------------------------------------------------------------------------- network
@pytest.fixture(scope="module")
def tiny_batch(abp_file):
    with sdata.TrajectorySet(abp_file) as tset:
        raw = tset.read([30])
        cfg = NetConfig.named("tiny", cutoff=4.0, length_scale=2.0, absolute_position=False)
        smp = sdata.frame_samples(raw, tset.adapter, cfg.neighbours, cfg.cutoff)
        return raw, tset.adapter, cfg, smp


def test_transformer_is_permutation_invariant_over_neighbours(tiny_batch):
    _, _, cfg, smp = tiny_batch
    model = _compiled(build(cfg))
    y = jnp.asarray(smp["y"])
    ls = jnp.zeros(len(y))
    base = np.asarray(model(y, _ctx(smp), ls))
    g = np.random.default_rng(1)
    perm = g.permutation(cfg.neighbours)
    shuffled = {k: (v[:, perm] if k in ("nb_rel", "nb_p", "nb_mask") else v) for k, v in smp.items()}
    np.testing.assert_allclose(np.asarray(model(y, _ctx(shuffled), ls)), base, atol=1e-5, rtol=0)
    # the output does depend on the neighbours (the test can fail)
    moved = dict(smp, nb_rel=smp["nb_rel"] * 0.9)
    assert np.abs(np.asarray(model(y, _ctx(moved), ls)) - base).max() > 1e-4


def test_transformer_is_translation_invariant(tiny_batch):
    raw, adapter, cfg, smp = tiny_batch
    model = _compiled(build(cfg))
    shifted = dict(raw, pos=(raw["pos"] + np.float32([7.3, -2.9])) % np.float32(adapter.box))
    smp2 = sdata.frame_samples(shifted, adapter, cfg.neighbours, cfg.cutoff)
    ls = jnp.zeros(len(smp["y"]))
    a = np.asarray(model(jnp.asarray(smp["y"]), _ctx(smp), ls))
    b = np.asarray(model(jnp.asarray(smp2["y"]), _ctx(smp2), ls))
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_envelope_makes_the_cutoff_smooth(tiny_batch):
    """A neighbour moved just across the cutoff changes the score by O(distance moved)."""
    _, _, cfg, smp = tiny_batch
    model = _compiled(build(cfg))
    one = {k: v[:1].copy() for k, v in smp.items()}
    one["nb_rel"][0, 0] = [cfg.cutoff - 1e-3, 0.0]
    inside = np.asarray(model(jnp.asarray(one["y"]), _ctx(one), jnp.zeros(1)))
    one["nb_mask"][0, 0] = 0.0  # dropped, as it would be just outside the cutoff
    outside = np.asarray(model(jnp.asarray(one["y"]), _ctx(one), jnp.zeros(1)))
    np.testing.assert_allclose(inside, outside, atol=1e-5)


@pytest.mark.parametrize("kind", ["transformer", "mlp"])
def test_jvp_divergence_equals_finite_differences(tiny_batch, kind):
    _, _, cfg, smp = tiny_batch
    cfg = NetConfig.named("tiny", kind=kind, cutoff=4.0, length_scale=2.0, depth=2, width=32)
    model = build(cfg)
    y = jnp.asarray(smp["y"][:16], jnp.float32)
    ctx = {k: v[:16] for k, v in _ctx(smp).items()}
    ls = jnp.zeros(16)
    s, J = jax.jit(lambda yy: score_and_jacobian(model, yy, ctx, ls, cfg.score_dims))(y)
    forward = _compiled(model)

    def central(h):
        fd = np.zeros(J.shape)
        for k in range(3):
            e = jnp.zeros_like(y).at[:, k].set(h)
            fd[:, :, k] = (np.asarray(forward(y + e, ctx, ls), np.float64)
                           - np.asarray(forward(y - e, ctx, ls), np.float64)) / (2 * h)
        return fd

    fd = (4 * central(1e-2) - central(2e-2)) / 3  # Richardson: error O(h^4)
    scale = np.abs(fd).max()
    assert scale > 1e-3
    np.testing.assert_allclose(np.asarray(J), fd, atol=2e-3 * scale)
    _, div = jax.jit(lambda yy: divergence(model, yy, ctx, ls, cfg.score_dims))(y)
    np.testing.assert_allclose(np.asarray(div), np.trace(fd, axis1=1, axis2=2), atol=6e-3 * scale)
    # Hutchinson is unbiased: its mean over probes approaches the exact trace
    hutch = jax.jit(jax.vmap(lambda k: divergence(model, y, ctx, ls, cfg.score_dims,
                                                  "hutchinson", k)[1]))
    probes = np.asarray(hutch(jax.random.split(jax.random.key(0), 200)))
    err = np.std(probes, 0) / np.sqrt(200)
    assert np.all(np.abs(np.mean(probes, 0) - np.asarray(div)) < 5 * err + 1e-5)


# ---------------------------------------------------------------------------- training
def _params(run, ema):
    from flax import nnx

    from scoremodels.rundir import load_run

    model, _ = load_run(run, use_ema=ema)
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]


# the resume tests' settings, shared so that XLA compiles their programs once (the tests'
# persistent compilation cache): the Python API's TrainConfig and the CLI's --config file
RESUME = dict(size="tiny", steps=6, batch_size=16, val_every=3, checkpoint_every=100,
              warmup=2, ema=0.9, memory_budget_mb=0.05, val_samples=64)


def test_checkpoint_resume_gives_identical_parameters(abp_file, tmp_path):
    from scoremodels.train import TrainConfig, train

    cfg = TrainConfig(**RESUME)
    train(abp_file, tmp_path / "full", cfg)
    train(abp_file, tmp_path / "part", cfg, stop_after=3)
    part3 = _params(tmp_path / "part", ema=False)
    train(abp_file, tmp_path / "part", resume=True)
    for ema in (False, True):
        a, b = _params(tmp_path / "full", ema), _params(tmp_path / "part", ema)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(part3, _params(tmp_path / "full", False)))
    rows = (tmp_path / "part" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["3", "6"]
    assert (tmp_path / "full" / "loss.png").stat().st_size > 1000


def test_time_budget_stops_checkpointed_and_resumes(abp_file, tmp_path):
    """--max-minutes: a spent budget stops after the current step, with a checkpoint at
    that step, and --resume completes the run to the same parameters."""
    toml = tmp_path / "train.toml"
    toml.write_text("[train]\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in RESUME.items()))
    args = ["train", str(abp_file), "--config", str(toml), "--quiet"]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    assert json.loads((tmp_path / "full" / "run.json").read_text())["train"]["ema"] == 0.9
    assert main(args + ["--out", str(tmp_path / "part"), "--max-minutes", "0"]) == 0
    steps = sorted(int(p.name) for p in (tmp_path / "part" / "checkpoints").iterdir()
                   if p.name.isdigit())
    assert steps == [1]
    assert main(args + ["--out", str(tmp_path / "part"), "--resume"]) == 0
    for ema in (False, True):
        a, b = _params(tmp_path / "full", ema), _params(tmp_path / "part", ema)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_cli_train_and_epr_end_to_end(abp_file, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", str(abp_file), "--out", str(run), "--size", "tiny", "--steps", "8",
            "--batch-size", "16", "--cutoff", "4", "--quiet", "--sigma", "0.05",
            "--sigma", "0.1", "--rotate"]
    assert main(args) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["sector"] == "full" and record["net"]["kind"] == "transformer"
    assert main(args) == 2  # existing run dir without --resume / --overwrite
    assert "already exists" in capsys.readouterr().err
    out = tmp_path / "epr.nc"
    assert main(["epr", str(run), str(abp_file), "-o", str(out), "--quiet",
                 "--batch-particles", "24", "--grid", "4"]) == 0
    import xarray as xr

    with xr.open_dataset(out) as ds:
        n_fr = 41 - int(0.2 * 41)
        assert ds["epr_local"].dims == ("frame", "atom") and ds["epr_local"].shape == (n_fr, 64)
        assert ds["velocity_flow"].shape == (n_fr, 64, 2)
        assert np.all(ds["epr_local"].values >= 0) and np.isfinite(ds["epr_total"].values)
        assert np.isfinite(ds["epr_total_err"].values) and ds["epr_total_err"] > 0
        assert "even" in ds.attrs["epr_convention"] and ds.attrs["sector"] == "full"
        assert ds["epr_map"].shape == (4, 4) and "epr_exact_total" in ds
        # pointwise: v^T D^-1 v from the stored velocity and the |v|^2 form agree on x
        assert np.isclose(float(ds["epr_local"].mean()), float(ds["epr_total"]), rtol=1e-4)
    assert main(["epr", str(run), str(abp_file), "-o", str(out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_clear_errors(abp_file, tmp_path, capsys):
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    assert main(["train", str(bad), "--out", str(tmp_path / "r1"), "--quiet"]) == 2
    assert "Cannot read" in capsys.readouterr().err
    couzin = simcore.run("couzin", steps=20, write_every=10, overrides={"n": 10},
                         out=tmp_path / "c.nc")
    assert main(["train", str(couzin), "--out", str(tmp_path / "r2"), "--quiet"]) == 2
    assert "couzin" in capsys.readouterr().err
    # hypoelliptic AOUP (D_t = 0): the full EPR is infinite and refused
    hypo = simcore.run("abp", steps=200, write_every=20, out=tmp_path / "h.nc",
                       overrides={"n": 32, "propulsion": "aoup", "D_t": 0.0, "phi": 0.3,
                                  "potential": "soft_harmonic", "dt": 1e-2, "v0": 0.5,
                                  "gamma": 0.5, "init": "uniform"})
    assert main(["train", str(hypo), "--out", str(tmp_path / "r3"), "--quiet", "--sector",
                 "full"]) == 2
    assert "infinite" in capsys.readouterr().err
    run = tmp_path / "r4"
    assert main(["train", str(hypo), "--out", str(run), "--quiet", "--size", "tiny",
                 "--steps", "2", "--batch-size", "8"]) == 0
    assert json.loads((run / "run.json").read_text())["sector"] == "propulsion"
    assert main(["epr", str(run), str(hypo), "-o", str(tmp_path / "e.nc"), "--quiet",
                 "--sector", "full"]) == 2
    assert "infinite" in capsys.readouterr().err
    assert main(["epr", str(run), str(abp_file), "-o", str(tmp_path / "e.nc"), "--quiet"]) == 2
    assert "trained on" in capsys.readouterr().err
    assert not (tmp_path / "e.nc").exists() and not (tmp_path / "e.nc.part").exists()


@pytest.mark.slow  # 45 s: two trainings compiled for their own device counts
def test_two_device_data_parallel_training(abp_file, tmp_path):
    """The sharded path on 2 forced host devices matches 1 device to float tolerance."""
    script = (
        "import sys, json; from scoremodels.train import TrainConfig, train\n"
        "cfg = TrainConfig(size='tiny', steps=4, batch_size=16, val_every=2, warmup=1,"
        " memory_budget_mb=0.05, val_samples=64)\n"
        "train(sys.argv[1], sys.argv[2], cfg)\n")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", script, str(abp_file), str(tmp_path / "two")],
                   check=True, env=env, cwd=ROOT)
    assert json.loads((tmp_path / "two" / "run.json").read_text())["devices"] == 2
    from scoremodels.train import TrainConfig, train

    train(abp_file, tmp_path / "one", TrainConfig(size="tiny", steps=4, batch_size=16,
                                                  val_every=2, warmup=1, memory_budget_mb=0.05,
                                                  val_samples=64))
    for a, b in zip(_params(tmp_path / "two", False), _params(tmp_path / "one", False)):
        # Adam normalises gradients, so float-rounding differences of the 2-way reduction
        # move near-zero-gradient parameters by up to ~lr·1e-2; a path that dropped half
        # the batch would differ by ~lr = 1e-3
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-3)
