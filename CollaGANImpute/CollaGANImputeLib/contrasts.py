"""MR contrasts: keys, display names, and how real data names its files.

A model handles the contrasts its card lists; this registry only supplies display names and file-name
patterns for the contrasts it knows, so a study folder is recognised without a manifest. A model with a
contrast not listed here still works: its key is its display name and files must be given explicitly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError


@dataclass(frozen=True)
class Contrast:
    key: str
    display_name: str
    # File-name tokens (case-insensitive); a token must stand between separators or at the ends of the stem.
    tokens: tuple[str, ...]


KNOWN_CONTRASTS: dict[str, Contrast] = {
    c.key: c
    for c in (
        Contrast("t1", "T1", ("t1", "t1n", "t1w", "t1native", "t1pre")),
        Contrast("t1gd", "T1Gd", ("t1gd", "t1c", "t1ce", "t1post", "t1contrast", "t1gad", "gd", "t1wce")),
        Contrast("t2", "T2", ("t2", "t2w")),
        Contrast("flair", "FLAIR", ("flair", "fla", "t2f", "t2flair")),
        Contrast("pd", "PD", ("pd", "pdw")),
    )
}

# What a model is trained on unless told otherwise, in model order (BraTS: METHOD.md's four contrasts).
DEFAULT_CONTRASTS = ("t1", "t1gd", "t2", "flair")

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")  # read
# Written: formats that keep header and voxels in one file, so one rename makes the write atomic.
WRITABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def display_name(key: str) -> str:
    contrast = KNOWN_CONTRASTS.get(key)
    return contrast.display_name if contrast else key


def strip_volume_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _tokens(stem: str) -> list[str]:
    """Split a file stem into lower-case words at separators; 'T1_AX_POST_GAD' -> ['t1','ax','post','gad']."""
    return [t for t in re.split(r"[^a-z0-9]+", stem.lower()) if t]


def match_contrast(name: str, candidates: list[str] | tuple[str, ...] | None = None) -> str | None:
    """The contrast a file or node name denotes, judged by its last matching word.

    Real names put the contrast last ('BraTS-GLI-00001-000-t1c', 'TCGA-DU-7294_fla_bet' has it before a
    processing tag), so words are read from the end and the first that names a contrast decides.
    Joined words such as 'T1CE' and 'T2FLAIR' count as one.
    """
    keys = list(candidates) if candidates is not None else list(KNOWN_CONTRASTS)
    words = _tokens(strip_volume_suffix(Path(name).name))
    joined_pairs = [a + b for a, b in zip(words, words[1:])]
    for index in range(len(words) - 1, -1, -1):
        for word in ([joined_pairs[index]] if index < len(joined_pairs) else []) + [words[index]]:
            for key in keys:
                contrast = KNOWN_CONTRASTS.get(key)
                if word == key or (contrast is not None and word in contrast.tokens):
                    return key
    return None


def find_study_files(folder: str | Path, contrasts: list[str] | tuple[str, ...]) -> dict[str, Path]:
    """Map each contrast to the one volume file in `folder` whose name denotes it.

    Raises InputError when two files claim the same contrast; contrasts with no file are left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or strip_volume_suffix(path.name) == path.name:
            continue
        key = match_contrast(path.name, contrasts)
        if key is not None:
            found.setdefault(key, []).append(path)
    for key, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise InputError(f"{display_name(key)}: two or more files in '{folder}' match it ({names}); give it explicitly")
    return {key: paths[0] for key, paths in found.items()}
