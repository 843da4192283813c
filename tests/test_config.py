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
        {"upsampling": "bilinear"},
        {"ssim_weight": -1.0},
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


def test_every_field_is_used_by_the_paper_a_table2_method_or_the_recipe():
    """At most 32 fields; each objective or discriminator switch is set by a preset or is a
    Table 2 method's `variant`."""
    import dataclasses

    from keras_pldt.config import GROUPS

    assert len(dataclasses.fields(PLDTConfig)) <= 32
    preset_fields = {name for preset in PRESETS.values() for name in preset}
    switches = {*GROUPS["objective"], *GROUPS["discriminators"], *GROUPS["augmentation"]}
    assert switches - {"variant"} <= preset_fields


@pytest.mark.parametrize(
    "retired, value",
    [("hard_negatives", 0.5), ("ema_decay", 0.99), ("adversarial_loss", "hinge"),
     ("domain_projection", True)],
)  # fmt: skip
def test_a_retired_experiment_switch_is_refused_in_one_line(retired, value, tmp_path):
    """An old config.json that sets a switch keras_pldt does not ship is refused naming it; one
    at the value the package computes loads."""
    saved = {**PLDTConfig().to_dict(), retired: value}
    with pytest.raises(ValueError, match=f"{retired}=.* does not ship") as error:
        PLDTConfig.from_dict(saved)
    assert "\n" not in str(error.value)
    from keras_pldt.config import RETIRED

    assert PLDTConfig.from_dict({**saved, retired: RETIRED[retired]}) == PLDTConfig()
    with pytest.raises(ValueError, match=retired):
        get_preset("robust", **{retired: value})


def test_recorded_statistics_of_old_runs_load_only_where_the_joint_batch_implies_them():
    robust = get_preset("robust").to_dict()
    assert PLDTConfig.from_dict({**robust, "recorded_domain_statistics": True}).joint_domain_batch
    assert PLDTConfig.from_dict({**PLDTConfig().to_dict(), "recorded_domain_statistics": False})
    with pytest.raises(ValueError, match="recorded_domain_statistics=False"):
        PLDTConfig.from_dict({**robust, "recorded_domain_statistics": False})


@pytest.mark.parametrize("variant", ["rf", "mse"])
def test_domain_switches_need_a_domain_discriminator(variant):
    with pytest.raises(ValueError, match="joint_domain_batch=True would be ignored"):
        PLDTConfig(variant=variant, joint_domain_batch=True)
    robust = get_preset("robust")
    assert robust.with_variant(variant).joint_domain_batch is False
    assert robust.with_variant(variant).feature_matching_weight == 0.0
    assert robust.with_variant("rf+dd-neg").joint_domain_batch is True


def test_with_variant_mse_resets_the_pixel_terms_and_discriminator_switches():
    mse = get_preset("robust").with_variant("mse")
    assert (mse.reconstruction_weight, mse.ssim_weight, mse.pixel_contrast_weight) == (0, 0, 0)
    assert (mse.spectral_norm, mse.diff_augment) == (False, "")
    # what C+MSE shares with the recipe: decoder, source augmentation, rate
    assert (mse.upsampling, mse.source_augment, mse.learning_rate) == ("resize", "flip,crop", 5e-4)
    with pytest.raises(ValueError, match="spectral_norm=True would be ignored"):
        get_preset("robust", variant="mse", spectral_norm=True)


def test_set_of_a_retired_switch_is_one_line_naming_it(capsys):
    from keras_pldt import train

    assert train.main(["--set", "ema_decay=0.9", "--run-dir", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ema_decay is an experiment switch" in err, err
