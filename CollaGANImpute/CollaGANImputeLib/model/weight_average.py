"""One generator whose weights are the mean of several generators' (a "model soup", stochastic weight averaging).

Runs that continue one model from the same weights at a small learning rate end close together, each moved by its
own noise; the mean of their weights often imputes better than any one of them and costs nothing at imputation
(docs/validation_rule.md, "The companions of one start averaged")."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..core.errors import ModelError
from .weights import Model, load_model, save_model

# Fields the averaged model's card takes from the first model's: what it reads and delivers. Its own figures (metrics)
# must be measured again.
KEPT_FIELDS = ("description", "normalisation", "output_intensity", "intensity_landmarks", "missing_inputs", "inference")
# What differs between the models' runs: kept per model under training.averaged_from; the rest of training (data,
# subjects, canvas) is common to them all.
PER_RUN = ("commands", "steps", "time_s", "initialised_from", "config", "device", "torch")


def average_models(weights: Sequence[str | Path], out: str | Path, description: str | None = None) -> Path:
    """Write to `out` (with its card) the generator whose every tensor is the mean of the models' `weights`, computed in
    float32 and stored in the first model's dtype. The models must share their contrasts, architecture and
    normalisation: only weights that imputed from the same inputs the same way can be averaged."""
    if len(weights) < 2:
        raise ModelError("averaging needs at least two models")
    models = [load_model(path) for path in weights]
    first = models[0]
    for model in models[1:]:
        for field in ("contrasts", "architecture", "normalisation", "output_intensity", "training.train_subjects",
                      "training.validation_subjects"):
            if _field(model.card, field) != _field(first.card, field):
                raise ModelError(f"'{model.weights_path}' differs from '{first.weights_path}' in its card's {field}: they cannot be averaged")
    states = [model.generator.state_dict() for model in models]
    averaged = {key: torch.stack([state[key].float() for state in states]).mean(0).to(value.dtype) for key, value in states[0].items()}
    first.generator.load_state_dict(averaged)
    fields = {key: first.card[key] for key in KEPT_FIELDS if key in first.card}
    if description:
        fields["description"] = description
    common = {key: value for key, value in first.card.get("training", {}).items() if key not in PER_RUN}
    fields["training"] = {**common, "averaged_from": [_ingredient(model) for model in models]}
    return save_model(first.generator, first.contrasts, out, fields, bias_corrected=first.bias_corrected,
                      brasyn_scaled=first.brasyn_scaled, dtype=getattr(torch, first.card.get("dtype", "float32")))


def _field(card: dict, dotted: str):
    for key in dotted.split("."):
        card = card.get(key, {}) if isinstance(card, dict) else {}
    return card


def _ingredient(model: Model) -> dict:
    """What the averaged card records of one model: its file, digest and how its run went."""
    training = model.card.get("training", {})
    return {"weights": str(model.weights_path), "sha256": model.card["sha256"], **{key: training[key] for key in PER_RUN if key in training}}
