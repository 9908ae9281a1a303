"""Trained generators on disk: safetensors weights plus the JSON model card (model_card.py).

The weights' sha256 is checked against the card before any tensor is used, so a file that was cut
short or altered is refused. Nothing here unpickles.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..core.errors import ModelError
from ..io.atomic import atomic_paths
from ..preparation.bias_field import METHOD as BIAS_METHOD
from ..preparation.brasyn_scale import METHOD as BRASYN_METHOD
from ..preparation.brasyn_scale import landmarks_back_to_sd
from .model_card import BRASYN_UNIT, CARD_FORMAT, INTENSITY_UNIT, bundled_weights, card_path_for, most_missing, read_card, sha256_of
from .networks import Generator, GeneratorConfig


@dataclass
class Model:
    generator: Generator
    card: dict
    weights_path: Path
    companion: Model | None = None  # the card's model for one missing contrast (card field "companion"), loaded with it

    def serving(self, missing: Sequence[str], given: Iterable[str]) -> Model:
        """The model that imputes `missing` from the contrasts `given`: the companion where the card names one for
        this contrast and the request is the one it was trained for (that contrast alone absent, every other one
        given), otherwise this model. A model trained for any subset spreads itself over every subset; the
        companion was judged better than it where it serves (docs/training.md)."""
        if self.companion is None or len(missing) != 1 or missing[0] not in self.card["companion"]["contrasts"]:
            return self
        present = set(given)
        return self.companion if all(key in present for key in self.contrasts if key != missing[0]) else self

    @property
    def contrasts(self) -> list[str]:
        return list(self.card["contrasts"])

    @property
    def name(self) -> str:
        return self.card.get("name", self.weights_path.stem)

    def smoothing(self, key: str) -> tuple[float, float]:
        """Widths (Gaussian sigma) of the smoothing the imputations of contrast `key` get (synthesis.smooth_in_brain):
        across slices in mm, in plane in voxels of the network's grid. The card's "inference" gives them per contrast
        ("by_contrast", since what smoothing costs in detail differs by contrast) or for every contrast; none: (0, 0)."""
        block = self.card.get("inference", {})
        widths = block.get("by_contrast", {}).get(key, block)
        return float(widths.get("through_plane_sigma_mm", 0.0)), float(widths.get("in_plane_sigma_voxels", 0.0))

    @property
    def most_missing(self) -> int:
        """How many absent inputs the model was trained for: 1 for CollaGAN, N-1 for any subset."""
        return most_missing(self.card)

    @property
    def bias_corrected(self) -> bool:
        """Whether the model was trained on, and so expects, inputs freed of their coil shading (bias_field.py)."""
        return "bias_field" in self.card.get("normalisation", {})

    @property
    def brasyn_scaled(self) -> bool:
        """Whether the model reads and writes the metrics' intensity space (brasyn_scale.py) rather than brain
        standard deviations."""
        return "brasyn" in self.card.get("normalisation", {})


def save_model(generator: Generator, contrasts: list[str], weights: str | Path, card_fields: dict, *,
               bias_corrected: bool = False, brasyn_scaled: bool = False, dtype: torch.dtype = torch.float32) -> Path:
    """Write the weights and their card, atomically and together; returns the weights path. `bias_corrected`: the
    model was trained on N4-corrected studies, so its inputs must be corrected too (the card says so);
    `brasyn_scaled`: trained in the BraSyn normalisation (brasyn_scale.py), so its inputs are scaled so too.
    `dtype` float16 halves the file (a wider network within the 40 MB a bundled model may take); `load_model`
    computes in float32 whatever the file holds."""
    weights = Path(weights)
    if len(contrasts) != generator.config.num_contrasts:
        raise ValueError("the contrast list must have one entry per generator channel")
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous() for k, v in generator.state_dict().items()}
    with atomic_paths(weights, card_path_for(weights)) as (weights_temp, card_temp):  # a weights file never meets another card
        save_file(tensors, str(weights_temp), metadata={"format": CARD_FORMAT})
        card = {
            "format": CARD_FORMAT,
            "name": weights.stem,
            "contrasts": list(contrasts),
            "architecture": {"generator": generator.config.to_dict()},
            "normalisation": {
                "input": "each input volume divided by the standard deviation of its brain voxels; negative voxels set to 0",
                "brain_mask": "user-given, or the voxels non-zero in any input",
                "slicing": "axial slices of the volume reoriented to LPS (index k inferior to superior)",
                **({"bias_field": f"each input freed of its coil shading first: {BIAS_METHOD}"} if bias_corrected else {}),
                **({"brasyn": BRASYN_METHOD} if brasyn_scaled else {}),
            },
            "output_intensity": BRASYN_UNIT if brasyn_scaled else INTENSITY_UNIT,
            **card_fields,
            "weights_file": weights.name,
            "dtype": str(next(iter(tensors.values())).dtype).replace("torch.", ""),
            "sha256": sha256_of(weights_temp),
        }
        card_temp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return weights


def back_to_sd_card_fields(percentiles: Mapping[str, Mapping[str, Sequence[float]]], contrasts: Sequence[str], chosen_by: str) -> dict:
    """The card fields of a BraSyn-scaled model whose output comes back to brain standard deviations: the landmark
    lines of `landmarks_back_to_sd` (`percentiles`: the training subjects' only) and the unit they deliver."""
    return {"intensity_landmarks": {**landmarks_back_to_sd(percentiles, contrasts), "chosen_by": chosen_by},
            "output_intensity": INTENSITY_UNIT}


def load_model(weights: str | Path | None = None, device: str | torch.device = "cpu") -> Model:
    """Load a generator after checking its card and the weights' sha256, with the companion its card names (checked
    alike); the bundled model by default."""
    weights = Path(weights) if weights is not None else bundled_weights()
    model = _load_one(weights, device)
    named = model.card.get("companion")
    if named is not None:
        companion = _load_one(model.weights_path.parent / named["weights_file"], device)
        if companion.contrasts != model.contrasts or "companion" in companion.card:
            raise ModelError(f"companion '{companion.weights_path}' of '{model.weights_path}' must take the same contrasts in the "
                             f"same order ({', '.join(model.contrasts)}) and name no companion of its own")
        model.companion = companion
    return model


def _load_one(weights: Path, device: str | torch.device) -> Model:
    card = read_card(weights)
    weights_file = weights.parent / card["weights_file"] if weights.suffix == ".json" else weights
    if not weights_file.is_file():
        raise ModelError(f"weights file '{weights_file}' not found")
    digest = sha256_of(weights_file)
    if digest != card["sha256"]:
        raise ModelError(
            f"weights file '{weights_file}' does not match its model card (sha256 {digest[:12]}... "
            f"instead of {card['sha256'][:12]}...): it is corrupt or was changed"
        )
    try:
        config = GeneratorConfig(**card["architecture"]["generator"])
    except (TypeError, ValueError, KeyError) as error:
        raise ModelError(f"model card of '{weights_file}' describes an unknown architecture: {error}") from None
    with torch.device("meta"):  # the card's shapes, checked against the file's before any memory is taken for them
        expected = {k: tuple(v.shape) for k, v in Generator(config).state_dict().items()}
    try:
        with safe_open(str(weights_file), framework="pt") as handle:
            stored = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
            if stored != expected:
                differing = sorted(set(stored.items()) ^ set(expected.items()))[0][0]
                raise ModelError(f"weights file '{weights_file}' does not fit its card's architecture (tensor {differing!r})")
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise ModelError(f"weights file '{weights_file}' cannot be read as safetensors: {error}") from None
    for key, tensor in tensors.items():  # a NaN weight turns every imputation into NaN or zero
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelError(f"weights file '{weights_file}' holds {int((~torch.isfinite(tensor)).sum())} NaN or infinite "
                             f"value(s) in {key!r}; it cannot impute")
    generator = Generator(config)
    generator.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    generator.eval().to(device)
    return Model(generator, card, weights_file)


def initial_state(model: Model) -> dict:
    """A released model as the start of a training run (`train --init` with its weights, fine-tuning it on other data
    or another recipe): its generator and the history its card records. A model holds no discriminator; the run's
    starts afresh."""
    training = model.card.get("training", {})
    return {"generator": model.generator.state_dict(), "commands": list(training.get("commands", [])),
            "step": int(training.get("steps", 0)), "elapsed_s": float(training.get("time_s", 0.0)), "config": training.get("config", {}),
            "initialised_from": training.get("initialised_from", {}), "weights": {"name": model.name, "sha256": model.card["sha256"]}}
