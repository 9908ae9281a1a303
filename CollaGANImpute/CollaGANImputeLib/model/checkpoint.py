"""Training checkpoints as one safetensors file, written atomically, read without unpickling.

A checkpoint is a tree of dicts, lists, numbers, strings and tensors (model and optimiser state dicts,
RNG states, the step). Tensors go into the safetensors body; the tree, with tensors replaced by their
keys, goes into the file's JSON metadata. Renaming a finished temporary file over the old checkpoint
means the file on disk is always whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..core.errors import ModelError
from ..io.atomic import atomic_path

TREE_KEY = "collagan_checkpoint_tree"


def _encode(node: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, torch.Tensor):
        tensors[path] = node.detach().to("cpu").clone().contiguous()
        return {"tensor": path}
    if isinstance(node, dict):
        return {"dict": [[key, _encode(value, f"{path}/{key}", tensors)] for key, value in node.items()]}
    if isinstance(node, (list, tuple)):
        return {"list": [_encode(value, f"{path}/{i}", tensors) for i, value in enumerate(node)]}
    if node is None or isinstance(node, (bool, int, float, str)):
        return {"value": node}
    raise TypeError(f"cannot store {type(node).__name__} at {path} in a checkpoint")


def _decode(node: dict, tensors: dict[str, torch.Tensor]) -> Any:
    if "tensor" in node:
        return tensors[node["tensor"]]
    if "dict" in node:
        return {key: _decode(value, tensors) for key, value in node["dict"]}
    if "list" in node:
        return [_decode(value, tensors) for value in node["list"]]
    return node["value"]


def save_checkpoint(tree: dict, path: str | Path) -> None:
    """Write a nested tree of tensors and plain values as one safetensors file, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(tree, "", tensors)
    with atomic_path(path) as temp:
        save_file(tensors, str(temp), metadata={TREE_KEY: json.dumps(encoded)})


def load_checkpoint(path: str | Path) -> dict:
    """The tree `save_checkpoint` wrote; ModelError for any other file (nothing is unpickled)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise ModelError(f"checkpoint '{path}' cannot be read: {error}") from None
    if TREE_KEY not in metadata:
        raise ModelError(f"'{path}' is a safetensors file but not a CollaGANImpute checkpoint")
    return _decode(json.loads(metadata[TREE_KEY]), tensors)
