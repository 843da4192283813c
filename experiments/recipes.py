"""Ablation recipes of docs/results.md, one line each: label -> PLDTConfig overrides.

Not part of the package. Load them into a reproduction run by path::

    python -m keras_pldt.reproduce --recipes experiments/recipes.py --variants robust+ssim ...

Each line is applied over the run's base settings (``--preset paper`` in every documented
command), exactly as a built-in method of ``keras_pldt.reproduce.METHODS``. The values are
spelled out rather than taken from ``keras_pldt.config.ROBUST`` so that the documented numbers
keep their recipe whatever the preset becomes; ``experiments/README.md`` lists the command
behind each number.
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
#: ROBUST_AT_2E4_NO_SRCAUG with Table 1's transposed-conv decoder: the base of the loss and
#: regulariser ablation.
ROBUST_AT_2E4_TRANSPOSED = {**ROBUST_AT_2E4_NO_SRCAUG, "upsampling": "transposed"}

#: The L1 recipe at Adam 5e-4, then 5e-5.
ROBUST_AT_5E4 = {**ROBUST_AT_2E4, "learning_rate": 5e-4, "decay_learning_rate": 5e-5}
#: ROBUST_AT_5E4 with joint D_A batches and no L1 anchor: the base of the pixel-MSE lines.
ROBUST_AT_5E4_L2 = {**ROBUST_AT_5E4, "joint_domain_batch": True, "reconstruction_weight": 0.0}
#: The `robust` preset as measured in docs/results.md's first section (the L1 recipe at 5e-4
#: with the recorded view of D_A, the pixel contrast and the SSIM term): the base of the lines
#: on what D_A reads.
PRESET = {
    **ROBUST_AT_5E4,
    "joint_domain_batch": True,
    "recorded_domain_statistics": True,
    "pixel_contrast_weight": 10.0,
    "ssim_weight": 30.0,
}

METHODS = {
    # The L1 recipe with the converter's view of D_A over the joint batch of the three pairings,
    # forward and backward (`recorded_domain_statistics` off): the recipe of the documented
    # `C+RF+DD+robust` rows of docs/results.md and the README.
    "robust(joint view)": {**ROBUST_AT_5E4, "joint_domain_batch": True},
    # The L1 recipe with D_A's batch norm over one pairing at a time (separate batches for the
    # associated, unassociated and generated pairs) instead of the update's pairings together.
    "robust(per-pairing)": {**ROBUST_AT_5E4, "joint_domain_batch": False},
    # The L1 recipe with the converter's view of D_A normalised by the batch statistics of D_A's
    # update, and its (I_S, I_T) features read from there (`recorded_domain_statistics`).
    "robust(recorded)": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "recorded_domain_statistics": True,
    },
    # The L1 recipe with half of D_A's unassociated targets drawn as the batch's most similar
    # other product (`hard_negatives`).
    "robust+hardneg": {**ROBUST_AT_5E4, "joint_domain_batch": True, "hard_negatives": 0.5},
    # Single switches on the L1 recipe, measured on the synthetic set at scale.
    "robust+hardneg1": {**ROBUST_AT_5E4, "joint_domain_batch": True, "hard_negatives": 1.0},
    "robust+L1x3": {**ROBUST_AT_5E4, "joint_domain_batch": True, "reconstruction_weight": 300.0},
    "robust+EMA.995": {**ROBUST_AT_5E4, "joint_domain_batch": True, "ema_decay": 0.995},
    "robust(lr2e-4,joint)": {**ROBUST_AT_2E4, "joint_domain_batch": True},
    "robust+contrast": {**ROBUST_AT_5E4, "joint_domain_batch": True, "code_contrast_weight": 1.0},
    "robust+projection": {**ROBUST_AT_5E4, "joint_domain_batch": True, "domain_projection": True},
    # The L1 recipe with the encoder trained by the L1 term alone (D_R, D_A and feature matching
    # train the decoder only).
    "robust+pixel-encoder": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "adversarial_encoder": False,
    },
    # The L1 recipe's anchor replaced by, or joined with, a pixel MSE (the conditional mean
    # rather than the median: faint features a median drops).
    "robust+L2": {**ROBUST_AT_5E4_L2, "mse_weight": 200.0},
    "robust+L1+L2": {**ROBUST_AT_5E4, "joint_domain_batch": True, "mse_weight": 200.0},
    "robust+L2x2": {**ROBUST_AT_5E4_L2, "mse_weight": 400.0},
    "robust+L2x5": {**ROBUST_AT_5E4_L2, "mse_weight": 1000.0},
    # robust+L2 with half of D_A's unassociated targets the batch's most similar other
    # product (robust+hardneg: +5 points of top-5 over the L1 recipe at the full budget).
    "robust+L2+hardneg": {**ROBUST_AT_5E4_L2, "mse_weight": 200.0, "hard_negatives": 0.5},
    # The L1 recipe (recorded view) with the pixel contrast beside its L1 anchor.
    "robust+pixel-contrast": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "recorded_domain_statistics": True,
        "pixel_contrast_weight": 5.0,
    },
    "robust+pixel-contrastx2": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "recorded_domain_statistics": True,
        "pixel_contrast_weight": 10.0,
    },
    # robust+pixel-contrastx2 with half of D_A's unassociated targets the batch's most similar
    # other product: the two relevance levers that each lifted top-5 at the full budget.
    "robust+pixel-contrastx2+hardneg": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "recorded_domain_statistics": True,
        "pixel_contrast_weight": 10.0,
        "hard_negatives": 0.5,
    },
    # robust+pixel-contrastx2 with the product images of the last 1,024 training targets as
    # the contrast's further negatives (`pixel_contrast_bank`): a synthetic epoch's 1,008
    # training products rather than the batch's 31 others.
    "robust+pixel-contrastx2+bank": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "recorded_domain_statistics": True,
        "pixel_contrast_weight": 10.0,
        "pixel_contrast_bank": 1024,
    },
    # robust+pixel-contrastx2 with a term that raises C-SSIM beside it: a pixel MSE (as in
    # robust+L1+L2) or the SSIM term.
    "robust+pixel-contrastx2+L2": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "recorded_domain_statistics": True,
        "pixel_contrast_weight": 10.0,
        "mse_weight": 200.0,
    },
    # The `robust` preset (keras_pldt.config.ROBUST).
    "robust+pixel-contrastx2+ssim": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "recorded_domain_statistics": True,
        "pixel_contrast_weight": 10.0,
        "ssim_weight": 30.0,
    },
    # The `robust` preset with the pixel contrast at twice its weight.
    "robust+pixel-contrastx4+ssim": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "recorded_domain_statistics": True,
        "pixel_contrast_weight": 20.0,
        "ssim_weight": 30.0,
    },
    # The `robust` preset with the contrast's temperature lowered (sharper: the nearest other
    # products weigh more) or raised, its weight scaled with it (the same weight / temperature).
    "robust+pixel-contrast-T0.02": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "recorded_domain_statistics": True,
        "pixel_contrast_weight": 4.0,
        "pixel_contrast_temperature": 0.02,
        "ssim_weight": 30.0,
    },
    "robust+pixel-contrast-T0.1": {
        **ROBUST_AT_5E4,
        "joint_domain_batch": True,
        "recorded_domain_statistics": True,
        "pixel_contrast_weight": 20.0,
        "pixel_contrast_temperature": 0.1,
        "ssim_weight": 30.0,
    },
    # robust+L2 with the pixel contrast: C(I_S) nearer its own product image than the batch's
    # other products' (`pixel_contrast_weight`).
    "robust+L2+pixel-contrast": {
        **ROBUST_AT_5E4_L2,
        "mse_weight": 200.0,
        "pixel_contrast_weight": 5.0,
    },
    "robust+L2+pixel-contrastx4": {
        **ROBUST_AT_5E4_L2,
        "mse_weight": 200.0,
        "pixel_contrast_weight": 20.0,
    },
    # robust+L2 with the encoder trained by the pixel MSE alone, as C+MSE's is (D_R, D_A and
    # feature matching train the decoder only): the code of C+MSE, the decoder of the GAN.
    "robust+L2+pixel-encoder": {
        **ROBUST_AT_5E4_L2,
        "mse_weight": 200.0,
        "adversarial_encoder": False,
    },
    # C+MSE with the same augmentation and the code contrast: whether it is D_A that gains.
    "C+MSE+srcaug+contrast": {
        "variant": "mse",
        "source_augment": "flip,crop",
        "code_contrast_weight": 1.0,
    },
    # The L1 recipe at 2e-4, and without its source augmentation.
    "robust(lr2e-4)": ROBUST_AT_2E4,
    "robust(no-srcaug)": ROBUST_AT_2E4_NO_SRCAUG,
    # Single switches on ROBUST_AT_2E4.
    "robust+ssim": {**ROBUST_AT_2E4, "ssim_weight": 100.0},
    "robust+patchD": {**ROBUST_AT_2E4, "real_fake_patches": True},
    "robust+L1x0.3": {**ROBUST_AT_2E4, "reconstruction_weight": 30.0},
    "robust+srcaug4": {**ROBUST_AT_2E4, "source_augment": "flip,crop,rotate,light"},
    "robust+flip-only": {**ROBUST_AT_2E4, "source_augment": "flip"},
    "robust+GDL": {**ROBUST_AT_2E4, "gradient_weight": 100.0},
    "robust+FFL": {**ROBUST_AT_2E4, "frequency_weight": 100.0},
    # Single switches on ROBUST_AT_2E4_NO_SRCAUG.
    "robust+resize+lowpass4": {**ROBUST_AT_2E4_NO_SRCAUG, "reconstruction_lowpass": 4},
    "robust(no-srcaug)+identity": {**ROBUST_AT_2E4_NO_SRCAUG, "identity_weight": 100.0},
    # Single switches on ROBUST_AT_2E4_TRANSPOSED, and the paper's method with L1 alone.
    "robust(transposed)": ROBUST_AT_2E4_TRANSPOSED,
    "C+RF+DD+L1": {"variant": "rf+dd", "reconstruction_weight": 100.0},
    "robust+lowpass4": {**ROBUST_AT_2E4_TRANSPOSED, "reconstruction_lowpass": 4},
    "robust+lowpass8": {**ROBUST_AT_2E4_TRANSPOSED, "reconstruction_lowpass": 8},
    "robust+hinge": {**ROBUST_AT_2E4_TRANSPOSED, "adversarial_loss": "hinge"},
    "robust+lsgan": {**ROBUST_AT_2E4_TRANSPOSED, "adversarial_loss": "lsgan"},
    "robust+R1": {**ROBUST_AT_2E4_TRANSPOSED, "r1_weight": 1.0},
    "robust+TTUR": {**ROBUST_AT_2E4_TRANSPOSED, "discriminator_lr_multiplier": 2.0},
    "robust+dropout": {**ROBUST_AT_2E4_TRANSPOSED, "discriminator_dropout": 0.2},
    "robust+EMA": {**ROBUST_AT_2E4_TRANSPOSED, "ema_decay": 0.9},
    # What D_A reads (docs/results.md): the preset with DiffAugment's translation alone in both
    # discriminators (no cutout hiding a quarter of the pair), with half of D_A's unassociated
    # targets the batch's most similar other product, with D_A as a projection critic, and
    # with the encoder trained by the pixel terms alone.
    "preset+translation": {**PRESET, "diff_augment": "translation"},
    "preset+translation+hardneg": {
        **PRESET,
        "diff_augment": "translation",
        "hard_negatives": 0.5,
    },
    "preset+translation+projection": {
        **PRESET,
        "diff_augment": "translation",
        "domain_projection": True,
    },
    "preset+projection": {**PRESET, "domain_projection": True},
    "preset+pixel-encoder": {**PRESET, "adversarial_encoder": False},
}
