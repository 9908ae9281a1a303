"""Training data: subjects from a manifest or a folder of subject folders, split by subject, turned
into normalised slices (axial, or of every orientation the imputation averages) on a common canvas, and augmented
alike across contrasts."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..core.contrasts import display_name
from ..core.errors import InputError
from ..core.orientations import PLANE_ORDERS, check_planes
from ..core.planes import centre_channels, plane_count
from ..io.series_recognition import find_study_files
from .study import PreparedStudy, brain_extent, brain_slices, prepare_study, slice_planes


@dataclass(frozen=True)
class Subject:
    name: str
    files: dict[str, Path]


def discover_subjects(data: str | Path, contrasts: Sequence[str], *, incomplete: bool = False) -> list[Subject]:
    """Subjects with every one of `contrasts`, from a manifest JSON (or a folder holding manifest.json)
    or a folder of subject folders whose file names say the contrast.

    With `incomplete` (training) a subject may lack contrasts, as long as two remain: one to learn
    from and one to learn."""
    data = Path(data)
    manifest = data / "manifest.json" if data.is_dir() else data
    if manifest.is_file():
        return _from_manifest(manifest, contrasts, incomplete)
    if not data.is_dir():
        raise InputError(f"training data '{data}' is neither a manifest file nor a folder")
    subjects = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = find_study_files(folder, contrasts)
        _require_contrasts(folder.name, files, contrasts, folder, incomplete)
        subjects.append(Subject(folder.name, files))
    if not subjects:
        raise InputError(f"'{data}' holds no subject folders")
    return subjects


def manifest_studies(manifest: Path, contrasts: Sequence[str]) -> dict[str, dict[str, Path]]:
    """Each subject's files by contrast as a manifest lists them (paths relative to the manifest)."""
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["subjects"]
        if not isinstance(entries, dict):
            raise KeyError("subjects")
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise InputError(f"manifest '{manifest}' is not a JSON object with a 'subjects' mapping ({error})") from None
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not all(isinstance(entry[k], str) for k in (*contrasts, "dir") if k in entry):
            raise InputError(f"manifest '{manifest}': subject '{name}' must map each contrast (and 'dir') to a file name, "
                             f"not {json.dumps(entry)}")
    return {
        name: {key: manifest.parent / entry.get("dir", name) / entry[key] for key in contrasts if key in entry}
        for name, entry in entries.items()
    }


def _from_manifest(manifest: Path, contrasts: Sequence[str], incomplete: bool) -> list[Subject]:
    subjects = []
    for name, files in manifest_studies(manifest, contrasts).items():
        _require_contrasts(name, files, contrasts, manifest, incomplete)
        subjects.append(Subject(name, files))
    return subjects


def _require_contrasts(name: str, files: dict, contrasts: Sequence[str], where: Path, incomplete: bool) -> None:
    absent = [display_name(k) for k in contrasts if k not in files]
    if not absent:
        return
    if not incomplete:
        raise InputError(f"subject '{name}' in '{where}' has no {', '.join(absent)}; this needs every contrast")
    if len(files) < 2:
        raise InputError(f"subject '{name}' in '{where}' has no {', '.join(absent)}; training needs at least two contrasts")


def only_subjects(subjects: Sequence[Subject], names: Sequence[str], where: str | Path) -> list[Subject]:
    """The subjects named (all when `names` is empty); a name not among them is an error naming `where`."""
    if not names:
        return list(subjects)
    unknown = sorted(set(names) - {s.name for s in subjects})
    if unknown:
        raise InputError(f"subject(s) {', '.join(unknown)} not in '{where}'")
    return [s for s in subjects if s.name in names]


def prepare_subject(subject: Subject, contrasts: Sequence[str]) -> PreparedStudy:
    return prepare_study(subject.files, contrasts)


def bounding_box_centre(mask: np.ndarray) -> tuple[int, int]:
    """The centre of the brain's in-plane bounding box, where training canvases are centred."""
    (top, bottom), (left, right) = brain_extent(mask)
    return (top + bottom + 1) // 2, (left + right + 1) // 2


def canvas_slices(study: PreparedStudy, contrasts: Sequence[str], canvas: tuple[int, int], indices: np.ndarray,
                  context: int = 0) -> np.ndarray:
    """Slices `indices` of every contrast, centred on the brain's box in a canvas: (len, N x planes, H, W), with
    `context` neighbours on either side as `slice_planes` gives them. A contrast the study lacks is zero-filled,
    as an absent input is."""
    centre = bounding_box_centre(study.mask)
    blank = np.zeros(study.mask.shape, dtype=np.float32)
    stack = slice_planes(np.stack([study.images.get(k, blank) for k in contrasts]), indices, context)
    out = np.zeros((len(indices), stack.shape[1], *canvas), dtype=np.float32)
    source, target = [], []
    for axis, size in enumerate(canvas):
        start = centre[axis] - size // 2
        lo, hi = max(start, 0), min(start + size, stack.shape[2 + axis])
        source.append(slice(lo, hi))
        target.append(slice(lo - start, hi - start))
    out[:, :, target[0], target[1]] = stack[:, :, source[0], source[1]]
    return out


@dataclass
class SliceSet:
    """Brain slices of several subjects on one canvas: images (M, N x planes, H, W) (planes: each slice with
    its `context` neighbours on either side, as `slice_planes` gives them), masks (M, H, W), and which contrasts
    each slice's subject has, present (M, N) (absent ones are zeros in images)."""

    images: torch.Tensor
    masks: torch.Tensor
    subjects: list[str]
    subject_index: np.ndarray
    present: torch.Tensor | None = None
    context: int = 0

    def __post_init__(self) -> None:
        if self.present is None:
            self.present = torch.ones(self.images.shape[0], self.images.shape[1] // plane_count(self.context), dtype=torch.bool)

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> SliceSet:
        """The same slices with the images on `device`: on a GPU, cropping and augmenting then run there too."""
        return replace(self, images=self.images.to(device))

    def of_subjects(self, names: Sequence[str], max_slices_per_subject: int | None = None) -> SliceSet:
        """The slices of the subjects named, in that order, optionally thinned evenly as `build_slice_set` does."""
        unknown = [name for name in names if name not in self.subjects]
        if unknown:
            raise InputError(f"subject(s) {', '.join(unknown)} not among the subjects of these slices ({', '.join(self.subjects)})")
        parts = [evenly(np.nonzero(self.subject_index == self.subjects.index(name))[0], max_slices_per_subject) for name in names]
        chosen = torch.from_numpy(np.concatenate(parts))
        index = np.concatenate([np.full(len(part), number) for number, part in enumerate(parts)])
        return SliceSet(self.images[chosen], self.masks[chosen], list(names), index, self.present[chosen], self.context)

    def split(self, validation: Sequence[str], training: Sequence[str] = (), max_validation_slices: int | None = None,
              ) -> tuple[SliceSet, SliceSet | None]:
        """Split by subject, never by slice: the `training` subjects (default: every one not in `validation`) and the
        `validation` ones, thinned evenly to `max_validation_slices` each (None when there are none)."""
        both = sorted(set(training) & set(validation))
        if both:
            raise InputError(f"subject(s) {', '.join(both)} both train and validate; a subject is one or the other")
        train_names = list(training) or [name for name in self.subjects if name not in validation]
        if not train_names:
            raise InputError("every subject was set aside for validation; none is left to train on")
        held_out = self.of_subjects(validation, max_validation_slices) if validation else None
        return self.of_subjects(train_names), held_out

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.images, self.masks, self.present))


def evenly(chosen: np.ndarray, most: int | None) -> np.ndarray:
    """At most `most` of `chosen`, evenly spaced from first to last (all when `most` is None or enough)."""
    if not most or len(chosen) <= most:
        return chosen
    return chosen[np.linspace(0, len(chosen) - 1, most).round().astype(int)]


def oriented(study: PreparedStudy, order: tuple[int, int, int]) -> PreparedStudy:
    """The study's arrays turned so that their first axis is the slice axis of `order` (one of PLANE_ORDERS), as
    `synthesis.synthesise` turns a study for its coronal and sagittal passes; views, not copies."""
    return replace(study, images={key: image.transpose(order) for key, image in study.images.items()}, mask=study.mask.transpose(order))


def build_slice_set(
    studies: dict[str, PreparedStudy], contrasts: Sequence[str], canvas: tuple[int, int], min_brain_fraction: float = 0.05,
    max_slices_per_subject: int | None = None, stride: int = 1, context: int = 0, planes: int = 1,
) -> SliceSet:
    """Slices with at least `min_brain_fraction` of the canvas in the brain, every `stride`-th of them, optionally
    thinned evenly; with `context` neighbours on either side of each (images (M, N x planes, H, W), for a 2.5-D
    generator). `planes` 3 cuts each subject's axial, then coronal, then sagittal slices (the orientations the default
    imputation averages), 1 its axial ones. The slices are written into one array as they are cut, so memory peaks at
    the studies plus it."""
    check_planes(planes)
    min_voxels = int(min_brain_fraction * canvas[0] * canvas[1])
    turned = [[oriented(study, order) for order in PLANE_ORDERS[:planes]] for study in studies.values()]
    chosen = [[evenly(brain_slices(view.mask, max(min_voxels, 1))[::stride], max_slices_per_subject) for view in views] for views in turned]
    counts = [sum(map(len, parts)) for parts in chosen]
    images = np.empty((sum(counts), len(contrasts) * plane_count(context), *canvas), dtype=np.float32)
    start = 0
    for parts, views in zip(chosen, turned):
        for part, view in zip(parts, views):
            images[start : start + len(part)] = canvas_slices(view, contrasts, canvas, part, context)
            start += len(part)
    present = [np.tile([key in study.images for key in contrasts], (count, 1)) for count, study in zip(counts, studies.values())]
    return SliceSet(
        torch.from_numpy(images), torch.from_numpy(images[:, centre_channels(context)].max(axis=1) > 0), list(studies),
        np.repeat(np.arange(len(counts)), counts), torch.from_numpy(np.concatenate(present)), context,
    )


def canvas_for(studies: dict[str, PreparedStudy], multiple: int, planes: int = 1) -> tuple[int, int]:
    """The smallest canvas (multiples of `multiple`) that holds every subject's brain box, in each of the first
    `planes` orientations."""
    height = width = multiple
    for study in studies.values():
        for order in PLANE_ORDERS[:planes]:
            (top, bottom), (left, right) = brain_extent(study.mask.transpose(order))
            height = max(height, math.ceil((bottom - top + 1) / multiple) * multiple)
            width = max(width, math.ceil((right - left + 1) / multiple) * multiple)
    return height, width


def augment(images: torch.Tensor, generator: torch.Generator, scale_range: tuple[float, float] = (0.9, 1.1), flip_p: float = 0.5,
            rotation: float = 0.0) -> torch.Tensor:
    """Random scaling about the centre, left-right flip and, if `rotation` (degrees) is given, an in-plane rotation
    of up to that much either way, identical for every contrast (and plane) of a sample."""
    batch = images.shape[0]
    low, high = scale_range
    scale = low + (high - low) * torch.rand(batch, generator=generator)
    flip = torch.rand(batch, generator=generator) < flip_p
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -1.0, 1.0) / scale
    theta[:, 1, 1] = 1.0 / scale
    if rotation:  # drawn only when asked, so that runs without it keep their random sequence
        angle = torch.deg2rad(rotation * (2 * torch.rand(batch, generator=generator) - 1))
        aspect = images.shape[-1] / images.shape[-2]  # the grid's units are half the width and half the height
        turn = torch.stack([torch.stack([angle.cos(), -angle.sin() / aspect], 1), torch.stack([angle.sin() * aspect, angle.cos()], 1)], 1)
        theta[:, :, :2] = turn @ theta[:, :, :2]
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def jitter_contrasts(images: torch.Tensor, strength: float, generator: torch.Generator, planes: int = 1) -> torch.Tensor:
    """Each contrast of each sample through its own random gamma curve, x -> top * (x / top) ** g, with log g uniform in
    [-strength, strength] and top the contrast's brightest voxel in the sample (every plane of a contrast alike).

    Scanners and protocols render a contrast's mid-tones brighter or darker than the training subjects' do; a network
    that has seen its inputs so bent leans less on one protocol's grey levels. Only inputs are meant to be jittered:
    what the network is asked to synthesise stays the real image. Non-positive voxels (the background) are kept."""
    batch, channels = images.shape[:2]
    contrasts = channels // planes
    gamma = torch.exp(strength * (2 * torch.rand(batch, contrasts, generator=generator) - 1))
    top = images.reshape(batch, contrasts, -1).amax(2).clamp_min(1e-6)
    gamma, top = (t.repeat_interleave(planes, 1)[:, :, None, None].to(images.device, images.dtype) for t in (gamma, top))
    return torch.where(images > 0, top * (images.clamp_min(0) / top) ** gamma, images)


def random_crops(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A `size` x `size` window of each sample at a random place, the same window for all its contrasts.

    Training on crops of the brain-centred canvas spends the generator's passes on brain rather than
    on the background around it, and a smaller plane makes each pass cheaper."""
    height, width = images.shape[-2:]
    if size > min(height, width):
        raise InputError(f"crop {size} is larger than the training canvas {height}x{width}")
    tops = torch.randint(height - size + 1, (images.shape[0],), generator=generator).tolist()
    lefts = torch.randint(width - size + 1, (images.shape[0],), generator=generator).tolist()
    return torch.stack([sample[:, top : top + size, left : left + size] for sample, top, left in zip(images, tops, lefts)])
