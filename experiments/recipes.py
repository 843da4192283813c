"""Ablation recipes of docs/results.md, one line each: label -> PLDTConfig overrides.

Not part of the package. Load them into a reproduction run by path::

    python -m keras_pldt.reproduce --recipes experiments/recipes.py --variants robust+ssim ...

Each line is applied over the run's base settings (``--preset paper`` in every documented
command), exactly as a built-in method of ``keras_pldt.reproduce.METHODS``. The values are
spelled out rather than taken from ``keras_pldt.config.ROBUST`` so that the documented numbers
keep their recipe whatever the preset becomes; ``experiments/README.md`` lists the command
behind each number. Lines that need a switch keras_pldt does not ship (``config.RETIRED``) are
reproducible with this file at commit 17a4359.
"""

#: The L1 recipe: the `robust` preset's L1 anchor, spectral norm, DiffAugment, feature
#: matching, decoder and source augmentation, without its pixel contrast and SSIM terms and with
#: D_A's batch norm per pairing; here at Adam 2e-4 (2e-5 in the decay epochs), the paper's
#: rate: the base of the single-switch ablation.
ROBUST_AT_2E4 = {
    "reconstruction_weight": 100.0,
    "spectral_norm": True,
    "diff_augment": "translation,cutout",
    "feature_matching_weight": 10.0,
    "upsampling": "resize",
    "source_augment": "flip,crop",
    "learning_rate": 2e-4,
    "decay_learning_rate": 2e-5,
}
#: ROBUST_AT_2E4 without source augmentation.
ROBUST_AT_2E4_NO_SRCAUG = {**ROBUST_AT_2E4, "source_augment": ""}
#: ROBUST_AT_2E4_NO_SRCAUG with Table 1's transposed-conv decoder.
ROBUST_AT_2E4_TRANSPOSED = {**ROBUST_AT_2E4_NO_SRCAUG, "upsampling": "transposed"}
#: The L1 recipe at Adam 5e-4, then 5e-5.
ROBUST_AT_5E4 = {**ROBUST_AT_2E4, "learning_rate": 5e-4, "decay_learning_rate": 5e-5}
#: The `robust` preset as measured in docs/results.md's first section: the L1 recipe at 5e-4
#: with D_A's joint batch, the pixel contrast and the SSIM term.
PRESET = {
    **ROBUST_AT_5E4,
    "joint_domain_batch": True,
    "pixel_contrast_weight": 10.0,
    "ssim_weight": 30.0,
}

METHODS = {
    # The L1 recipe with D_A's batch norm over one pairing at a time (separate batches for the
    # associated, unassociated and generated pairs) instead of the update's pairings together.
    "robust(per-pairing)": {**ROBUST_AT_5E4, "joint_domain_batch": False},
    # The L1 recipe with D_A's joint batch: the converter's view of D_A normalised by the batch
    # statistics of D_A's update, its (I_S, I_T) features read from there.
    "robust(recorded)": {**ROBUST_AT_5E4, "joint_domain_batch": True},
    # The L1 recipe (joint batch) with the pixel contrast beside its L1 anchor.
    "robust+pixel-contrast": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "pixel_contrast_weight": 5.0,
    },
    "robust+pixel-contrastx2": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "pixel_contrast_weight": 10.0,
    },
    # The `robust` preset (keras_pldt.config.ROBUST).
    "robust+pixel-contrastx2+ssim": PRESET,
    # The `robust` preset with the pixel contrast at twice its weight.
    "robust+pixel-contrastx4+ssim": {**PRESET, "pixel_contrast_weight": 20.0},
    # The L1 recipe at 2e-4, and without its source augmentation.
    "robust(lr2e-4)": ROBUST_AT_2E4,
    "robust(no-srcaug)": ROBUST_AT_2E4_NO_SRCAUG,
    # Single switches on ROBUST_AT_2E4.
    "robust+ssim": {**ROBUST_AT_2E4, "ssim_weight": 100.0},
    "robust+L1x0.3": {**ROBUST_AT_2E4, "reconstruction_weight": 30.0},
    "robust+srcaug4": {**ROBUST_AT_2E4, "source_augment": "flip,crop,rotate,light"},
    "robust+flip-only": {**ROBUST_AT_2E4, "source_augment": "flip"},
    # Table 1's transposed-conv decoder, and the paper's method with L1 alone.
    "robust(transposed)": ROBUST_AT_2E4_TRANSPOSED,
    "C+RF+DD+L1": {"variant": "rf+dd", "reconstruction_weight": 100.0},
    # What D_A reads (docs/results.md): the preset with DiffAugment's translation alone in both
    # discriminators (no cutout hiding a quarter of the pair).
    "preset+translation": {**PRESET, "diff_augment": "translation"},
    # At 128 px: the preset with its pixel and feature terms (L1, SSIM, pixel contrast, feature
    # matching) at 1/2 and 1/4 of their weights, i.e. Eq. 6's adversarial halves 2x and 4x as
    # strong against them (Adam is invariant to the loss's overall scale).
    "preset(adversarial x2)": {
        **PRESET,
        "reconstruction_weight": 50.0,
        "ssim_weight": 15.0,
        "feature_matching_weight": 5.0,
        "pixel_contrast_weight": 5.0,
    },
    "preset(adversarial x4)": {
        **PRESET,
        "reconstruction_weight": 25.0,
        "ssim_weight": 7.5,
        "feature_matching_weight": 2.5,
        "pixel_contrast_weight": 2.5,
    },
}
