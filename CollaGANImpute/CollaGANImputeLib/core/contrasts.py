"""MR contrasts: keys, display names, and how real data names its files.

A model handles the contrasts its card lists; this registry only supplies display names and file-name
patterns for the contrasts it knows, so a study folder is recognised without a manifest. A model with a
contrast not listed here still works: its key is its display name and files must be given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Contrast:
    key: str
    display_name: str
    # File-name tokens (case-insensitive); a token must stand between separators or at the ends of the stem.
    tokens: tuple[str, ...]


KNOWN_CONTRASTS: dict[str, Contrast] = {
    c.key: c
    for c in (
        # Scanner sequence names count too: MPRAGE/SPGR/BRAVO/TFL/TFE are T1-weighted, and so is a T1 FLAIR.
        Contrast("t1", "T1", ("t1", "t1n", "t1w", "t1native", "t1pre", "mprage", "spgr", "fspgr", "bravo", "tfl", "tfe",
                              "t1se", "t1tse", "t1fse", "t1flair")),
        Contrast("t1gd", "T1Gd", ("t1gd", "t1c", "t1ce", "t1post", "t1contrast", "t1gad", "gd", "t1wce")),
        Contrast("t2", "T2", ("t2", "t2w", "t2tse", "t2fse")),
        # TIRM and DarkFluid: Siemens's dark-fluid (FLAIR) inversion recovery.
        Contrast("flair", "FLAIR", ("flair", "fla", "t2f", "t2flair", "tirm", "t2tirm", "darkfluid")),
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
