"""Merging presets, TOML configs and overrides; validation messages."""

from __future__ import annotations

import pytest

import simcore
from simcore.config import parse_override, resolve


def test_merge_order_preset_config_override_explicit(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('preset = "swarm"\nsteps = 77\nseed = 5\n[params]\nn = 40\nnoise = 0.1\n')
    params, settings, preset = resolve("couzin", config=cfg, overrides=["noise=0.2"], seed=9)
    assert preset == "swarm"
    assert params.r_o == 1.0  # from the preset
    assert params.n == 40  # from the config
    assert params.noise == 0.2  # override beats config
    assert settings.steps == 77 and settings.seed == 9  # explicit beats config


def test_override_values_are_toml_then_string():
    assert parse_override("n=500") == ("n", 500)
    assert parse_override("noise=0.1") == ("noise", 0.1)
    assert parse_override("boundary=periodic") == ("boundary", "periodic")
    assert parse_override("B=[[1, 0], [0, 1]]") == ("B", [[1, 0], [0, 1]])
    with pytest.raises(simcore.UserInputError, match="KEY=VALUE"):
        parse_override("n500")


@pytest.mark.parametrize("overrides,fragment", [
    ({"n": -3}, "n: Input should be greater than or equal to 1"),
    ({"nn": 3}, "nn: unknown parameter"),
    ({"r_o": 30.0}, "r_r <= r_o <= r_a"),
    ({"boundary": "periodic"}, "needs a box side > 0"),
    ({"rule": "vicsek"}, "rule: Input should be"),
    ({"steps": -1}, "steps: Input should be greater than or equal to 0"),
])
def test_bad_parameters_give_one_clear_message(overrides, fragment):
    with pytest.raises(simcore.UserInputError) as info:
        resolve("couzin", overrides=overrides)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and "Traceback" not in message


def test_unknown_model_and_preset():
    with pytest.raises(simcore.UserInputError, match="Unknown model 'fish'"):
        resolve("fish")
    with pytest.raises(simcore.UserInputError, match="Unknown preset 'mill'"):
        resolve("couzin", preset="mill")


def test_presets_api_returns_validated_params():
    presets = simcore.presets("couzin")
    assert set(presets) >= {"swarm", "torus", "dynamic_parallel", "highly_parallel",
                            "dewi_swarm", "dewi_torus", "dewi_dynamic_parallel",
                            "dewi_highly_parallel"}
    assert presets["dewi_torus"].field_of_view == 60.0  # blind half-angle 150 degrees
    assert presets["highly_parallel"].r_o - presets["highly_parallel"].r_r == 12.0
