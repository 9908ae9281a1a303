"""The mean of several generators' weights (model/weight_average.py): exact, carded, and refused across architectures."""

from __future__ import annotations

import pytest
import torch
from CollaGANImputeLib.core.errors import ModelError
from CollaGANImputeLib.model.networks import Generator, GeneratorConfig
from CollaGANImputeLib.model.weight_average import average_models
from CollaGANImputeLib.model.weights import load_model, save_model
from conftest import CONTRASTS

TINY = dict(num_contrasts=4, branch_width=4, decoder_width=8, depth=3)


def saved(path, seed: int, **config) -> str:
    torch.manual_seed(seed)
    training = {"train_subjects": ["a", "b"], "validation_subjects": ["c"], "steps": 10 * seed, "commands": [f"train --seed {seed}"]}
    return str(save_model(Generator(GeneratorConfig(**{**TINY, **config})), CONTRASTS, path, {"description": f"seed {seed}",
                                                                                            "training": training}))


def test_average_is_the_mean_of_every_tensor_with_a_card_naming_its_models(tmp_path):
    paths = [saved(tmp_path / f"m{seed}.safetensors", seed) for seed in (1, 2, 3)]
    out = average_models(paths, tmp_path / "soup.safetensors", description="the mean of three")
    soup, models = load_model(out), [load_model(p) for p in paths]  # load_model checks the card's sha256
    for key, tensor in soup.generator.state_dict().items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, torch.stack([m.generator.state_dict()[key] for m in models]).mean(0))
    assert not torch.equal(soup.generator.state_dict()["head.weight"], models[0].generator.state_dict()["head.weight"])
    training = soup.card["training"]
    assert training["train_subjects"] == ["a", "b"] and "steps" not in training and "metrics" not in soup.card
    assert [(m["weights"], m["sha256"], m["steps"]) for m in training["averaged_from"]] == [(p, m.card["sha256"], m.card["training"]["steps"])
                                                                                         for p, m in zip(paths, models)]
    assert soup.card["description"] == "the mean of three"


def test_models_that_differ_cannot_be_averaged(tmp_path):
    first = saved(tmp_path / "a.safetensors", 1)
    with pytest.raises(ModelError, match="b.safetensors' differs from .*a.safetensors' in its card's architecture"):
        average_models([first, saved(tmp_path / "b.safetensors", 2, depth=4)], tmp_path / "soup.safetensors")
    with pytest.raises(ModelError, match="at least two"):
        average_models([first], tmp_path / "soup.safetensors")
    assert not (tmp_path / "soup.safetensors").exists()
