"""A compact file of prepared training slices, so that a run elsewhere (a GPU machine, a cluster node) starts
without reading, resampling and normalising the studies again.

Each subject's contrast is stored as 8-bit integers scaled by its own maximum over the kept slices (the
error is at most 1/510 of that maximum, far below any imputation's), compressed, in a NumPy .npz that loads
without unpickling. The file records the contrasts, the canvas, the intensity space (bias-corrected,
BraSyn-scaled) and where the studies came from, so a run that asks for something else is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..core.errors import InputError
from ..io.atomic import atomic_path
from .data import SliceSet

CACHE_FORMAT = "collagan-slice-cache-1"
LEVELS = 255


def save_slice_cache(path: str | Path, slices: SliceSet, contrasts: Sequence[str], description: dict) -> Path:
    """Write `slices` (every subject's kept slices) with `description` (canvas, intensity space, source) atomically."""
    path = Path(path)
    images = slices.images.numpy()
    scales = np.zeros((len(slices.subjects), len(contrasts)), dtype=np.float32)
    quantised = np.zeros(images.shape, dtype=np.uint8)
    for number in range(len(slices.subjects)):
        chosen = slices.subject_index == number
        scales[number] = images[chosen].max(axis=(0, 2, 3))
        safe = np.where(scales[number] > 0, scales[number], 1.0)[None, :, None, None]
        quantised[chosen] = np.rint(np.clip(images[chosen], 0.0, None) / safe * LEVELS).astype(np.uint8)
    header = {"format": CACHE_FORMAT, "contrasts": list(contrasts), **description}
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        np.savez_compressed(handle, images=quantised, scales=scales, subject_index=slices.subject_index.astype(np.int32),
                            masks=np.packbits(slices.masks.numpy(), axis=-1), present=slices.present.numpy(),
                            subjects=np.array(slices.subjects, dtype=str), header=np.array(json.dumps(header)))
    return path


def is_slice_cache(path: str | Path) -> bool:
    return Path(path).suffix == ".npz" and Path(path).is_file()


def _header(data) -> dict:
    """The header of an opened cache, checked to be this format's (ValueError otherwise)."""
    header = json.loads(str(data["header"]))
    if header.get("format") != CACHE_FORMAT:
        raise ValueError(f"format {header.get('format')!r}, expected {CACHE_FORMAT!r}")
    return header


def slice_cache_planes(path: str | Path) -> int:
    """How many slice orientations a cache holds (1 for caches made before it said), read without its slices."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            return int(_header(data).get("planes", 1))
    except (OSError, KeyError, ValueError) as error:
        raise InputError(f"slice cache '{path}' cannot be read: {error}") from None


def load_slice_cache(path: str | Path, contrasts: Sequence[str], intensity: dict, planes: int | None = None) -> tuple[SliceSet, dict]:
    """The cached slices as float32, and the file's header; refused if its contrasts, intensity space (`intensity`: the
    header's bias_correct and brasyn_scale) or slice orientations (`planes`, if given) differ from the run's."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            header = _header(data)
            quantised, scales = data["images"], data["scales"]
            masks = np.unpackbits(data["masks"], axis=-1, count=quantised.shape[-1]).astype(bool)
            subject_index, present, subjects = data["subject_index"].astype(np.int64), data["present"], [str(s) for s in data["subjects"]]
    except (OSError, KeyError, ValueError) as error:
        raise InputError(f"slice cache '{path}' cannot be read: {error}") from None
    if header["contrasts"] != list(contrasts):
        raise InputError(f"slice cache '{path}' holds {', '.join(header['contrasts'])}; this run trains {', '.join(contrasts)}")
    if planes is not None and header.get("planes", 1) != planes:
        raise InputError(f"slice cache '{path}' holds slices of {header.get('planes', 1)} orientation(s); this run trains on "
                         f"{planes} (--planes): make a cache with --planes {planes}")
    for key, wanted in intensity.items():
        if bool(header.get(key)) != bool(wanted):
            raise InputError(f"slice cache '{path}' was made {'with' if header.get(key) else 'without'} --{key.replace('_', '-')}; "
                             f"make one {'with' if wanted else 'without'} it for this run")
    images = quantised.astype(np.float32) * (scales[subject_index] / LEVELS)[:, :, None, None]
    return SliceSet(torch.from_numpy(images), torch.from_numpy(masks), subjects, subject_index, torch.from_numpy(present)), header
