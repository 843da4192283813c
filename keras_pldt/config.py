"""`PLDTConfig`: every setting of a run in one JSON-serialisable dataclass, plus named presets.

The defaults are the paper's (Sec. 5.2 and Table 1): 64x64 images, base width 128, a 64-d code,
batch 128, Adam lr 2e-4 with beta_1 0.5, 25 epochs then 5 more at lr 2e-5, N(0, 0.02) weights,
LeakyReLU slope 0.2.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

VARIANTS = ("rf+dd", "rf", "mse", "rf+dd-neg")
"""The Table 2 methods that train a converter: C+RF+DD (ours), C+RF, C+MSE, C+RF+DD-Neg."""

ADVERSARIAL_LOSSES = ("bce", "hinge", "lsgan")
PRECISIONS = ("float32", "bfloat16", "mixed_float16", "auto")
"""Compute precisions; "auto" is `keras_pldt.precision.auto_precision()` when the model is built."""
DIFF_AUGMENTATIONS = ("color", "translation", "cutout")
"""Policies of `diff_augment`: DiffAugment of everything the discriminators see."""
SOURCE_AUGMENTATIONS = ("flip", "crop", "rotate", "light")
"""Policies of `source_augment`: random views of the converter's training photos."""
UPSAMPLINGS = ("transposed", "resize")
"""Decoder x2 stages: Table 1b's transposed convs, or nearest-neighbour resize + conv."""


def policy_names(policy: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """The names in a comma-separated augmentation `policy`; ValueError naming `what` and the
    unknown names otherwise."""
    names = tuple(p for p in policy.split(",") if p)
    unknown = set(names) - set(allowed)
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; choose from {','.join(allowed)}")
    return names


@dataclasses.dataclass
class PLDTConfig:
    """All settings of a PLDT run. `PLDTConfig()` is the paper's setting."""

    # networks (Table 1)
    image_size: int = 64
    base_filters: int = 128
    code_dim: int = 64
    upsampling: str = "transposed"
    leaky_slope: float = 0.2
    init_stddev: float = 0.02
    # objective: the Table 2 method and the converter's extra terms (losses.converter_terms)
    variant: str = "rf+dd"
    adversarial_loss: str = "bce"
    reconstruction_weight: float = 0.0  # L1 to the associated target (losses.pixel_l1)
    reconstruction_lowpass: int = 1
    mse_weight: float = 0.0  # pixel MSE to the associated target (losses.pixel_mse)
    ssim_weight: float = 0.0  # 1 - C-SSIM to the associated target (losses.ssim_loss)
    gradient_weight: float = 0.0  # edge strengths to the target (losses.gradient_difference)
    frequency_weight: float = 0.0  # focal frequency loss to the target (losses.focal_frequency)
    feature_matching_weight: float = 0.0  # D_A features of (I_S, C(I_S)) vs (I_S, I_T)
    identity_weight: float = 0.0  # C(I_T) = I_T (losses.identity_l1)
    code_contrast_weight: float = 0.0  # losses.code_contrast: code(I_S) picks its I_T
    pixel_contrast_weight: float = 0.0  # losses.pixel_contrast: C(I_S) picks its I_T
    # the pixel contrast's further negatives: product images of the last N training targets
    pixel_contrast_bank: int = 0
    pixel_contrast_temperature: float = 0.05  # of its mean squared pixel distances
    adversarial_encoder: bool = True  # False: D_R/D_A terms train the decoder only
    # discriminators
    spectral_norm: bool = False
    real_fake_patches: bool = False
    r1_weight: float = 0.0
    discriminator_dropout: float = 0.0
    joint_domain_batch: bool = False  # D_A's batch norm sees an update's pairings as one batch
    # with joint_domain_batch: the converter's view of D_A normalises the generated pairs with
    # the statistics of D_A's update and reads its (I_S, I_T) features from there
    recorded_domain_statistics: bool = False
    hard_negatives: float = 0.0  # share of I_T^- drawn as the batch's most similar other product
    domain_projection: bool = False  # D_A as a projection critic: <e(I_S), phi(I_T)> + psi(phi)
    # augmentation
    diff_augment: str = ""  # DiffAugment of what the discriminators see: color,translation,cutout
    source_augment: str = ""  # random views of the training sources: flip,crop,rotate,light
    # schedule (Sec. 5.2)
    batch_size: int = 128
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    epochs: int = 25
    decay_epochs: int = 5
    decay_learning_rate: float = 2e-5
    discriminator_lr_multiplier: float = 1.0
    ema_decay: float = 0.0
    seed: int = 0
    # data
    reverse: bool = False
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    # runtime: how a run executes, not what it learns; a resume may change these
    precision: str = "float32"
    jit_compile: bool = False
    subpixel_convs: bool = True
    cache: bool = True

    def __post_init__(self):
        self.validate()

    @property
    def total_epochs(self) -> int:
        """Epochs at the base rate plus the decay epochs (25 + 5 in the paper)."""
        return self.epochs + self.decay_epochs

    @property
    def uses_real_fake(self) -> bool:
        return self.variant != "mse"

    @property
    def uses_domain(self) -> bool:
        return self.variant in ("rf+dd", "rf+dd-neg")

    def validate(self) -> None:
        """Raise `ValueError` naming the field for any setting that cannot work."""
        size = self.image_size
        if size < 16 or size & (size - 1):
            raise ValueError(f"image_size must be a power of two >= 16 (64, 128, 256), got {size}")
        for name in ("base_filters", "code_dim", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.epochs < 0 or self.decay_epochs < 0 or self.total_epochs < 1:
            raise ValueError("epochs and decay_epochs must be >= 0 with at least one epoch in all")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.adversarial_loss not in ADVERSARIAL_LOSSES:
            raise ValueError(
                f"adversarial_loss must be one of {ADVERSARIAL_LOSSES}, "
                f"got {self.adversarial_loss!r}"
            )
        if self.upsampling not in UPSAMPLINGS:
            raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {self.upsampling!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        lowpass = self.reconstruction_lowpass
        if lowpass < 1 or self.image_size % lowpass:
            raise ValueError(
                f"reconstruction_lowpass must be >= 1 and divide image_size, got {lowpass}"
            )
        for name in (*ENCODER_TERMS, "feature_matching_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.pixel_contrast_temperature > 0:
            raise ValueError(
                f"pixel_contrast_temperature must be > 0, got {self.pixel_contrast_temperature}"
            )
        bank = self.pixel_contrast_bank
        if bank and not bank >= self.batch_size:
            raise ValueError(
                f"pixel_contrast_bank must be 0 or >= batch_size={self.batch_size}, got {bank}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.hard_negatives <= 1.0:
            raise ValueError(f"hard_negatives must be in [0, 1], got {self.hard_negatives}")
        if not 0.0 <= self.discriminator_dropout < 1.0:
            raise ValueError(
                f"discriminator_dropout must be in [0, 1), got {self.discriminator_dropout}"
            )
        policy_names(self.source_augment, SOURCE_AUGMENTATIONS, "source_augment")
        policy_names(self.diff_augment, DIFF_AUGMENTATIONS, "diff_augment")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.decay_learning_rate <= self.learning_rate:
            raise ValueError(
                f"decay_learning_rate must be in (0, learning_rate={self.learning_rate:g}], "
                f"got {self.decay_learning_rate:g}"
            )
        if not self.discriminator_lr_multiplier > 0:
            raise ValueError(
                f"discriminator_lr_multiplier must be > 0, got {self.discriminator_lr_multiplier}"
            )
        if (
            not self.adversarial_encoder
            and self.uses_real_fake
            and not any(getattr(self, name) for name in ENCODER_TERMS)
        ):
            raise ValueError(
                "adversarial_encoder=False needs a term that trains the encoder: set one of "
                + ", ".join(ENCODER_TERMS)
            )
        ignored = self.ignored_switches()
        if ignored:
            name, reason = next(iter(ignored.items()))
            raise ValueError(f"{name}={getattr(self, name)!r} would be ignored: {reason}")

    def ignored_switches(self) -> dict[str, str]:
        """Switches set away from their default that this config would not use, with why."""
        reasons = {}
        if not self.uses_real_fake:
            for name in DISCRIMINATOR_SWITCHES:
                reasons[name] = f"variant {self.variant!r} trains no discriminator"
        elif not self.uses_domain:
            domain_only = (
                "feature_matching_weight", "joint_domain_batch", "recorded_domain_statistics",
                "hard_negatives",
            )  # fmt: skip
            for name in (*domain_only, "domain_projection"):
                reasons[name] = f"variant {self.variant!r} has no domain discriminator D_A"
        elif self.variant != "rf+dd":
            reasons["hard_negatives"] = f"variant {self.variant!r} has no unassociated pairs"
        if not self.joint_domain_batch:
            reasons.setdefault(
                "recorded_domain_statistics", "joint_domain_batch is off (no joint statistics)"
            )
        if not self.pixel_contrast_weight:
            for name in ("pixel_contrast_bank", "pixel_contrast_temperature"):
                reasons[name] = "pixel_contrast_weight is 0 (no pixel contrast)"
        if not self.reconstruction_weight:
            reasons["reconstruction_lowpass"] = "reconstruction_weight is 0 (no L1 term)"
        return {k: why for k, why in reasons.items() if getattr(self, k) != _DEFAULTS[k]}

    def with_variant(self, variant: str) -> PLDTConfig:
        """This config for `variant`, with the switches that variant cannot use back at their
        defaults (a preset's discriminator switches for C+MSE, D_A feature matching for C+RF).

        C+MSE is Table 2's pixel-supervision baseline, so its objective stays the pixel MSE:
        a preset's other pixel terms (L1, MSE, SSIM, gradient, frequency, pixel contrast) are
        reset too.
        """
        values = {**self.to_dict(), "variant": variant}
        if variant == "mse":
            values.update({name: _DEFAULTS[name] for name in PIXEL_TERMS})
        return PLDTConfig(**_unused_reset(values))

    def override(self, **changes: Any) -> PLDTConfig:
        """This config with `changes` applied, as a preset takes explicit settings: a `variant`
        change first adapts it (`with_variant`); a switch of this config that the changes leave
        without use (`recorded_domain_statistics` once `joint_domain_batch` is off) goes back
        to its default; a change that would itself be ignored is an error."""
        base = self.with_variant(changes["variant"]) if "variant" in changes else self
        return PLDTConfig(**_unused_reset({**base.to_dict(), **changes}, keep=changes))

    def group(self, name: str) -> dict[str, Any]:
        """The fields of one concern (`GROUPS`): networks, objective, ..., runtime."""
        return {k: getattr(self, k) for k in GROUPS[name]}

    def identity(self) -> dict[str, Any]:
        """The fields that define what a run learns: all but the runtime group."""
        return {k: v for k, v in self.to_dict().items() if k not in GROUPS["runtime"]}

    def runtime(self) -> dict[str, Any]:
        """How a run executes (precision, XLA, kernels, caching); a resume may change it."""
        return self.group("runtime")

    def replace(self, **changes: Any) -> PLDTConfig:
        """A copy with `changes` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path | None = None, **extra: Any) -> str:
        """The config as JSON (with `extra` keys such as versions); written to `path` if given."""
        text = json.dumps({**self.to_dict(), **extra}, indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PLDTConfig:
        """Build from a dict; keys that are not fields (e.g. saved versions) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> PLDTConfig:
        """Parse JSON text, or read it from a file path."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))


GROUPS: dict[str, tuple[str, ...]] = {
    "networks": (
        "image_size", "base_filters", "code_dim", "upsampling", "leaky_slope", "init_stddev",
    ),
    "objective": (
        "variant", "adversarial_loss", "reconstruction_weight", "reconstruction_lowpass",
        "mse_weight", "ssim_weight", "gradient_weight", "frequency_weight",
        "feature_matching_weight", "identity_weight", "code_contrast_weight",
        "pixel_contrast_weight", "pixel_contrast_bank", "pixel_contrast_temperature",
        "adversarial_encoder",
    ),
    "discriminators": (
        "spectral_norm", "real_fake_patches", "r1_weight", "discriminator_dropout",
        "joint_domain_batch", "recorded_domain_statistics", "hard_negatives",
        "domain_projection",
    ),
    "augmentation": ("diff_augment", "source_augment"),
    "schedule": (
        "batch_size", "learning_rate", "beta_1", "beta_2", "epochs", "decay_epochs",
        "decay_learning_rate", "discriminator_lr_multiplier", "ema_decay", "seed",
    ),
    "data": ("reverse", "val_fraction", "test_fraction"),
    "runtime": ("precision", "jit_compile", "subpixel_convs", "cache"),
}  # fmt: skip
"""`PLDTConfig`'s fields by concern; the flat names are those of `--set` and config.json."""

#: Switches of the discriminators and of the converter's terms that read them: meaningless for
#: C+MSE.
DISCRIMINATOR_SWITCHES = (
    "adversarial_loss", "feature_matching_weight", "spectral_norm", "real_fake_patches",
    "r1_weight", "discriminator_dropout", "diff_augment", "discriminator_lr_multiplier",
    "joint_domain_batch", "recorded_domain_statistics", "hard_negatives", "domain_projection",
    "adversarial_encoder",
)  # fmt: skip
#: The converter's pixel terms beside the adversarial ones (Table 2's C+MSE has none of them).
PIXEL_TERMS = (
    "reconstruction_weight", "mse_weight", "ssim_weight", "gradient_weight", "frequency_weight",
    "pixel_contrast_weight",
)  # fmt: skip
#: The converter's terms that read no discriminator: what trains the encoder when
#: `adversarial_encoder` is False.
ENCODER_TERMS = (*PIXEL_TERMS, "identity_weight", "code_contrast_weight")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PLDTConfig)}


ROBUST: dict[str, Any] = {
    # pix2pix-style L1 to the associated target next to D_A, spectral norm and DiffAugment
    # (geometric only: colour is the attribute D_A must judge) in the discriminators, and
    # feature matching on D_A's features. See docs/results.md for the ablation behind it.
    "reconstruction_weight": 100.0,
    "spectral_norm": True,
    "diff_augment": "translation,cutout",
    "feature_matching_weight": 10.0,
    # D_A's batch norm over an update's associated, unassociated and generated pairs as one
    # batch, in its update and in the converter's view of it: per-pairing batches left D_A's
    # moving statistics unlike any batch it was trained on, and retrieval by DD-score at chance
    # (top-1 3.0% / 1.5% against 10.4% / 4.5% joint on grocery_val, seeds 0 / 1).
    "joint_domain_batch": True,
    # ... and in the converter's view, the generated pairs alone, normalised with the batch
    # statistics of D_A's update held constant: at width 32 1.14x the paper step instead of
    # 1.30x in float32, 1.17x instead of 1.30x in bfloat16, and within the spread between seeds
    # of the full joint view on every column (grocery_val seeds 0-3, the synthetic set at scale
    # seeds 0-1).
    "recorded_domain_statistics": True,
    # Nearest-neighbour x2 + conv in the decoder instead of transposed convs: no checkerboard,
    # C-SSIM 0.485 vs 0.440 on grocery_val (two seeds).
    "upsampling": "resize",
    # Random flips and crops of the converter's training photos: with a few hundred photos the
    # converter otherwise memorises them (train RMSE 0.09, test 0.19).
    "source_augment": "flip,crop",
    # Adam at 2.5x the paper's rate (5e-4, then 5e-5): a few hundred updates are all small
    # data gives; C-SSIM +0.02 and sharpness +0.06 on grocery_val, both seeds.
    "learning_rate": 5e-4,
    "decay_learning_rate": 5e-5,
    # Relevance: InfoNCE over pixel distances (C(I_S) nearer its own product image than the
    # batch's other products'), the unassociated pairs of Eq. 5 as a pixel term; and structure:
    # 1 - SSIM to the associated target. On the synthetic set at scale (2,520 updates, two
    # seeds) top-5 93% / category 0.89 against the L1-only recipe's 83% / 0.81 and C-SSIM
    # 0.75-0.77 against C+MSE's 0.73, sharpness 0.92; on grocery_val (210 updates) top-5 +6
    # and +13 points. docs/results.md, "The recommended recipe".
    "pixel_contrast_weight": 10.0,
    "ssim_weight": 30.0,
}

PRESETS: dict[str, dict[str, Any]] = {
    # Exactly the published recipe (Sec. 5.2, Table 1).
    "paper": {},
    # The recommended recipe for small data and small compute: the paper's networks, variant
    # and schedule, plus the ROBUST switches, at batch 32 (the paper's 128 leaves a few
    # thousand photos a handful of updates per epoch; docs/results.md is measured at 32).
    "robust": {**ROBUST, "batch_size": 32},
    # The robust recipe at a width that trains on a 2-core CPU in minutes (synthetic set).
    "demo": {**ROBUST, "base_filters": 16, "batch_size": 32, "epochs": 4, "decay_epochs": 1},
}


def _unused_reset(values: dict[str, Any], keep=()) -> dict[str, Any]:
    """`values` with the switches a config of them would ignore back at their defaults, except
    those in `keep` (left for validation to refuse)."""
    draft = object.__new__(PLDTConfig)  # unvalidated: finding what to reset is the check
    draft.__dict__.update(values)
    reset = {k: _DEFAULTS[k] for k in draft.ignored_switches() if k not in keep}
    return {**values, **reset}


def get_preset(name: str, **overrides: Any) -> PLDTConfig:
    """The named preset (`paper`, `demo`, ...) with `overrides` applied
    (`PLDTConfig.override`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PLDTConfig(**PRESETS[name]).override(**overrides)
