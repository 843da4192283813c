import json

import pytest

from keras_pldt.config import PRESETS, PLDTConfig, get_preset


def test_defaults_are_the_paper():
    cfg = PLDTConfig()
    assert (cfg.image_size, cfg.base_filters, cfg.code_dim, cfg.batch_size) == (64, 128, 64, 128)
    assert (cfg.learning_rate, cfg.beta_1) == (2e-4, 0.5)
    assert (cfg.epochs, cfg.decay_epochs, cfg.decay_learning_rate) == (25, 5, 2e-5)
    assert (cfg.init_stddev, cfg.leaky_slope) == (0.02, 0.2)
    assert get_preset("paper") == cfg


def test_json_round_trip(tmp_path):
    cfg = get_preset("demo", variant="mse", seed=3)
    path = tmp_path / "config.json"
    cfg.to_json(path, tensorflow_version="x")
    assert json.loads(path.read_text())["tensorflow_version"] == "x"
    assert PLDTConfig.from_json(path) == cfg
    assert PLDTConfig.from_json(cfg.to_json()) == cfg


def test_robust_preset_keeps_the_paper_and_adds_switches():
    paper, robust = get_preset("paper").to_dict(), get_preset("robust").to_dict()
    changed = {k for k in paper if paper[k] != robust[k]}
    assert changed == {
        "reconstruction_weight",
        "spectral_norm",
        "diff_augment",
        "feature_matching_weight",
        "joint_domain_batch",
        "recorded_domain_statistics",
        "upsampling",
        "source_augment",
        "learning_rate",
        "decay_learning_rate",
        "pixel_contrast_weight",
        "ssim_weight",
        "batch_size",
    }
    assert robust["variant"] == "rf+dd"  # the domain discriminator stays


def test_demo_preset_is_small():
    demo = get_preset("demo")
    assert demo.base_filters < PLDTConfig().base_filters
    assert set(PRESETS) >= {"paper", "demo"}


@pytest.mark.parametrize(
    "change",
    [
        {"image_size": 48},
        {"variant": "gan"},
        {"adversarial_loss": "wasserstein"},
        {"precision": "float8"},
        {"epochs": 0, "decay_epochs": 0},
        {"diff_augment": "color,blur"},
    ],
)
def test_invalid_settings_name_the_field(change):
    with pytest.raises(ValueError, match=next(iter(change)).split("_")[0]):
        PLDTConfig(**change)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")


def test_groups_cover_every_field_once():
    from keras_pldt.config import GROUPS

    names = [name for group in GROUPS.values() for name in group]
    assert sorted(names) == sorted(PLDTConfig().to_dict())
    assert set(PLDTConfig().runtime()) == set(GROUPS["runtime"])
    assert "precision" not in PLDTConfig().identity() and "variant" in PLDTConfig().identity()


@pytest.mark.parametrize("variant", ["rf", "mse"])
def test_domain_projection_needs_a_domain_discriminator(variant):
    with pytest.raises(ValueError, match="domain_projection=True would be ignored"):
        PLDTConfig(variant=variant, domain_projection=True)
    projected = PLDTConfig(domain_projection=True)
    assert projected.with_variant(variant).domain_projection is False
    assert projected.with_variant("rf+dd-neg").domain_projection is True


def test_a_preset_switch_the_overrides_leave_unused_goes_back_to_its_default(monkeypatch):
    """`--preset X --set joint_domain_batch=false` on a preset that records D_A's statistics
    turns the recording off with it; setting both explicitly is still refused."""
    recording = {**PRESETS["robust"], "recorded_domain_statistics": True}
    monkeypatch.setitem(PRESETS, "recording", recording)
    assert get_preset("recording").recorded_domain_statistics
    per_pairing = get_preset("recording", joint_domain_batch=False)
    assert (per_pairing.joint_domain_batch, per_pairing.recorded_domain_statistics) == (
        False,
        False,
    )
    assert get_preset("recording", variant="rf").feature_matching_weight == 0.0
    with pytest.raises(ValueError, match="recorded_domain_statistics"):
        get_preset("recording", joint_domain_batch=False, recorded_domain_statistics=True)
