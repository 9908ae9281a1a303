"""A training run's settings, stored in every checkpoint so a resume repeats the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..core.contrasts import DEFAULT_CONTRASTS
from ..model.networks import DiscriminatorConfig, GeneratorConfig
from .losses import (
    LossWeights,
)

CHECKPOINT_NAME = "checkpoint.safetensors"
WEIGHTS_DTYPES = ("float32", "float16")  # what an exported model may be stored in


@dataclass
class TrainConfig:
    """Defaults are METHOD.md's; every field is recorded with the checkpoint and in the model card."""

    contrasts: list[str] = field(default_factory=lambda: list(DEFAULT_CONTRASTS))
    validation_subjects: list[str] = field(default_factory=list)  # the split is by subject, and part of the run
    subjects: list[str] = field(default_factory=list)  # the training subjects (empty: every one not held out)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    weights: LossWeights = field(default_factory=LossWeights)
    steps: int = 1000
    batch_size: int = 1
    lr: float = 1e-5
    lr_discriminator: float = 1e-5
    beta1: float = 0.5
    weight_decay: float = 0.01
    decay_rate: float = 0.99
    decay_every: int = 400
    discriminator_every: int = 2
    augment: bool = True
    rotation: float = 0.0  # with augment: the largest random in-plane rotation, in degrees (0: none)
    input_gamma: float = 0.0  # > 0: each input of the direct pass through a random gamma, log g uniform in +-input_gamma
    crop: int = 0  # train on random crop x crop windows of the canvas (0: the whole canvas)
    brain_box: bool = False  # train on each batch cut to its brain's box, as imputation cuts it (instead of crop)
    planes: int = 1  # slice orientations trained on: 1 axial, 3 also coronal and sagittal (those the default imputation averages)
    optimizer: str = "adam"  # "adam" (METHOD.md: L2 weight decay) or "adamw" (decoupled decay)
    bias_correct: bool = False  # train on studies freed of their coil shading (bias_field.corrected_study)
    brasyn_scale: bool = False  # train in the metrics' intensity space (brasyn_scale.brasyn_scaled_study)
    missing_min: int = 1  # contrasts absent per sample: CollaGAN 1..1; any subset 1..N-1; single input N-1..N-1
    missing_max: int = 1
    targets: list[str] = field(default_factory=list)  # the contrasts trained as targets (empty: every one)
    curriculum_steps: int = 0  # steps over which the largest absent count grows from missing_min to missing_max
    ema_decay: float = 0.0  # > 0: validate and export an exponential moving average of the generator's weights
    seed: int = 0
    bf16: bool = False
    validate_every: int = 200
    checkpoint_every: int = 100
    weights_dtype: str = "float32"  # of the exported weights (one of WEIGHTS_DTYPES): "float16" halves the file; training is unchanged

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = dict(values)
        values["generator"] = GeneratorConfig(**values["generator"])
        values["discriminator"] = DiscriminatorConfig(**values["discriminator"])
        values["weights"] = LossWeights(**values["weights"])
        return cls(**values)
