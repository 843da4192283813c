"""`PLDTConfig`: every setting of a run in one JSON-serialisable dataclass, plus named presets.

The defaults are the paper's (Sec. 5.2 and Table 1): 64x64 images, base width 128, a 64-d code,
batch 128, Adam lr 2e-4 with beta_1 0.5, 25 epochs then 5 more at lr 2e-5, N(0, 0.02) weights,
LeakyReLU slope 0.2. Every field is used by the paper, a Table 2 method or the `robust` recipe,
or is a data, schedule or runtime setting.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

VARIANTS = ("rf+dd", "rf", "mse", "rf+dd-neg")
"""The Table 2 methods that train a converter: C+RF+DD (ours), C+RF, C+MSE, C+RF+DD-Neg."""

PRECISIONS = ("float32", "bfloat16", "mixed_float16", "auto")
"""Compute precisions; "auto" is `keras_pldt.precision.auto_precision()` when the model is built."""
DIFF_AUGMENTATIONS = ("color", "translation", "cutout")
"""Policies of `diff_augment`: DiffAugment of everything the discriminators see."""
SOURCE_AUGMENTATIONS = ("flip", "crop", "rotate", "light")
"""Policies of `source_augment`: random views of the converter's training photos."""
UPSAMPLINGS = ("transposed", "resize")
"""Decoder x2 stages: Table 1b's transposed convs, or nearest-neighbour resize + conv."""

#: The experiments' switches that keras_pldt does not ship, with the one value of each that the
#: shipped code computes. docs/results.md holds their evidence, measured at commit 17a4359.
RETIRED = {
    "adversarial_loss": "bce",
    "reconstruction_lowpass": 1,
    "mse_weight": 0.0,
    "gradient_weight": 0.0,
    "frequency_weight": 0.0,
    "identity_weight": 0.0,
    "code_contrast_weight": 0.0,
    "pixel_contrast_bank": 0,
    "pixel_contrast_temperature": 0.05,
    "adversarial_encoder": True,
    "real_fake_patches": False,
    "r1_weight": 0.0,
    "discriminator_dropout": 0.0,
    "hard_negatives": 0.0,
    "domain_projection": False,
    "discriminator_lr_multiplier": 1.0,
    "ema_decay": 0.0,
}
#: Every switch name an old config or command line may still carry: `RETIRED`, and
#: `recorded_domain_statistics`, which `joint_domain_batch` implies.
RETIRED_SWITCHES = (*RETIRED, "recorded_domain_statistics")


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
    # objective: the Table 2 method and the recipe's terms beside Eq. 6 (`PLDT.loss_weights`)
    variant: str = "rf+dd"
    reconstruction_weight: float = 0.0  # L1 to the associated target
    ssim_weight: float = 0.0  # 1 - C-SSIM to the associated target
    feature_matching_weight: float = 0.0  # D_A features of (I_S, C(I_S)) vs (I_S, I_T)
    pixel_contrast_weight: float = 0.0  # C(I_S) nearer its own product than the batch's others
    # discriminators
    spectral_norm: bool = False
    # D_A's batch norm over an update's pairings as one batch; the converter's view of D_A then
    # normalises the generated pairs with that update's statistics
    joint_domain_batch: bool = False
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
        for name, allowed in (
            ("variant", VARIANTS), ("upsampling", UPSAMPLINGS), ("precision", PRECISIONS),
        ):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in (*PIXEL_TERMS, "feature_matching_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        policy_names(self.source_augment, SOURCE_AUGMENTATIONS, "source_augment")
        policy_names(self.diff_augment, DIFF_AUGMENTATIONS, "diff_augment")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.decay_learning_rate <= self.learning_rate:
            raise ValueError(
                f"decay_learning_rate must be in (0, learning_rate={self.learning_rate:g}], "
                f"got {self.decay_learning_rate:g}"
            )
        ignored = ignored_switches(self.to_dict())
        if ignored:
            name, reason = next(iter(ignored.items()))
            raise ValueError(f"{name}={getattr(self, name)!r} would be ignored: {reason}")

    def with_variant(self, variant: str) -> PLDTConfig:
        """This config for `variant`, with the switches that variant cannot use back at their
        defaults (a preset's discriminator switches for C+MSE, D_A's for C+RF).

        C+MSE is Table 2's pixel-supervision baseline, so its objective stays the pixel MSE:
        a preset's other pixel terms (L1, SSIM, pixel contrast) are reset too.
        """
        values = {**self.to_dict(), "variant": variant}
        if variant == "mse":
            values.update({name: _DEFAULTS[name] for name in PIXEL_TERMS})
        return PLDTConfig(**_reset_ignored(values))

    def override(self, **changes: Any) -> PLDTConfig:
        """This config with `changes` applied, as a preset takes explicit settings: a `variant`
        change first adapts it (`with_variant`); a change that would itself be ignored is an
        error."""
        _refuse_retired(changes)
        base = self.with_variant(changes["variant"]) if "variant" in changes else self
        return PLDTConfig(**_reset_ignored({**base.to_dict(), **changes}, keep=changes))

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
        """Build from a dict; keys that are not fields (e.g. saved versions) are ignored, and a
        retired experiment switch set to anything but the value the package computes is
        refused (`RETIRED`)."""
        _refuse_retired(values)
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
        "variant", "reconstruction_weight", "ssim_weight", "feature_matching_weight",
        "pixel_contrast_weight",
    ),
    "discriminators": ("spectral_norm", "joint_domain_batch"),
    "augmentation": ("diff_augment", "source_augment"),
    "schedule": (
        "batch_size", "learning_rate", "beta_1", "beta_2", "epochs", "decay_epochs",
        "decay_learning_rate", "seed",
    ),
    "data": ("reverse", "val_fraction", "test_fraction"),
    "runtime": ("precision", "jit_compile", "subpixel_convs", "cache"),
}  # fmt: skip
"""`PLDTConfig`'s fields by concern; the flat names are those of `--set` and config.json."""

#: The converter's pixel terms beside the adversarial ones (Table 2's C+MSE has none of them).
PIXEL_TERMS = ("reconstruction_weight", "ssim_weight", "pixel_contrast_weight")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PLDTConfig)}


def ignored_switches(values: dict[str, Any]) -> dict[str, str]:
    """The switches of config `values` set away from their defaults that its variant would not
    use, with why."""
    variant = values["variant"]
    reasons = {}
    if variant == "mse":
        for name in ("spectral_norm", "diff_augment", "feature_matching_weight"):
            reasons[name] = f"variant {variant!r} trains no discriminator"
    if variant in ("mse", "rf"):
        reasons.setdefault("joint_domain_batch", f"variant {variant!r} has no D_A")
        reasons.setdefault("feature_matching_weight", f"variant {variant!r} has no D_A")
    return {k: why for k, why in reasons.items() if values[k] != _DEFAULTS[k]}


def _reset_ignored(values: dict[str, Any], keep=()) -> dict[str, Any]:
    """`values` with the switches a config of them would ignore back at their defaults, except
    those in `keep` (left for validation to refuse)."""
    reset = {k: _DEFAULTS[k] for k in ignored_switches(values) if k not in keep}
    return {**values, **reset}


def _refuse_retired(values: dict[str, Any]) -> None:
    """ValueError, one line, for a retired experiment switch (`RETIRED`) set to a value the
    package does not compute."""
    if "recorded_domain_statistics" in values:  # the converter's view of a joint D_A batch
        recorded = bool(values["recorded_domain_statistics"])
        if recorded != bool(values.get("joint_domain_batch", False)):
            raise ValueError(
                f"recorded_domain_statistics={recorded} is an experiment switch that keras_pldt "
                "does not ship (joint_domain_batch implies it); docs/results.md has its evidence"
            )
    for name, value in RETIRED.items():
        if name in values and values[name] != value:
            raise ValueError(
                f"{name}={values[name]!r} is an experiment switch that keras_pldt does not ship "
                f"(it computes {name}={value!r}); docs/results.md has its evidence, measured "
                "at commit 17a4359"
            )


ROBUST: dict[str, Any] = {
    # pix2pix-style L1 to the associated target beside D_A, and 1 - SSIM for the target's local
    # contrast and structure
    "reconstruction_weight": 100.0,
    "ssim_weight": 30.0,
    # relevance as a pixel term: C(I_S) nearer its own product image than the batch's others
    # (the unassociated pairs of Eq. 5)
    "pixel_contrast_weight": 10.0,
    # D_A's features of (I_S, C(I_S)) matched to those of (I_S, I_T)
    "feature_matching_weight": 10.0,
    # stable discriminators on small data: spectral norm, and DiffAugment of what they see
    # (geometric only: colour is the attribute D_A must judge)
    "spectral_norm": True,
    "diff_augment": "translation,cutout",
    # D_A's batch norm over an update's pairings as one batch: per-pairing batches leave its
    # moving statistics unlike any batch it was trained on
    "joint_domain_batch": True,
    # nearest-neighbour x2 + conv in the decoder: no checkerboard
    "upsampling": "resize",
    # random flips and crops of the training photos: a few hundred are otherwise memorised
    "source_augment": "flip,crop",
    # a few hundred updates are all small data gives: a higher rate than the paper's
    "learning_rate": 5e-4,
    "decay_learning_rate": 5e-5,
}
"""The recommended recipe's switches over the paper's; docs/results.md holds the evidence."""

PRESETS: dict[str, dict[str, Any]] = {
    # Exactly the published recipe (Sec. 5.2, Table 1).
    "paper": {},
    # The recommended recipe for small data and small compute, at batch 32 (the paper's 128
    # leaves a few thousand photos a handful of updates per epoch).
    "robust": {**ROBUST, "batch_size": 32},
    # The robust recipe at a width that trains on a 2-core CPU in minutes (synthetic set).
    "demo": {**ROBUST, "base_filters": 16, "batch_size": 32, "epochs": 4, "decay_epochs": 1},
}


def get_preset(name: str, **overrides: Any) -> PLDTConfig:
    """The named preset (`paper`, `robust`, `demo`) with `overrides` applied
    (`PLDTConfig.override`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PLDTConfig(**PRESETS[name]).override(**overrides)
