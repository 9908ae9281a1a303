"""Is a study what the model was trained on? Checks run before imputing, so that a raw clinical study is
refused with its reasons instead of imputed into a plausible-looking wrong image.

The bundled model was trained on skull-stripped, co-registered studies on 1 mm grids, in axial slices.
Each check below compares one property of a prepared study with that, and says in one line what is wrong
and what to do. The thresholds were set on the 26 subjects of ../shared/data/training.json (every one
passes; benchmarks/ood_checks.py measures them, the margins are in README, "Clinical studies"):

- brain mask volume: at most 1729 ml there; a mask above 2500 ml holds more than a brain (the raw
  TCGA-FG-6692 study, given as it is, has 6589 ml: its whole field of view).
- bright ring: the share of the mask's outer 3 mm whose T1 (else T1Gd) intensity is above the brain's 90th
  percentile. Scalp fat is brighter than white matter on T1. At most 0.131 (T1) and 0.271 (T1Gd) there;
  refused above 0.18 and 0.35 (the raw study in a mask 5 mm too wide: 0.28 on T1).
- slice spacing: 1 mm in every subject; refused above 2.5 mm (the raw study: 5.5 mm).
- in-plane spacing: 1 mm there; refused outside 0.67-1.5 mm, a brain that would look 1.5 times too small
  or too large to the network.
- orientation: slices more than 30 degrees from axial (sagittal or coronal acquisitions, steep obliques).
- contrast identity: contrast_identity.identity_notes (two inputs whose histograms fit each
  other's contrast better than their own).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..core.contrasts import display_name
from ..core.errors import InputError
from ..io.geometry import Grid
from .contrast_identity import brain_ml, identity_notes
from .study import PreparedStudy

MODEL_SPACING_MM = 1.0  # every training subject's grid
MAX_BRAIN_ML = 2500.0
TRAINING_MAX_BRAIN_ML = 1729.0
RING_MM = 3.0
MAX_BRIGHT_RING = {"t1": 0.18, "t1gd": 0.35}  # checked on the first of these the study has
MIN_RING_VOXELS = 1000  # fewer (a crop inside the brain): no ring to judge
MAX_SLICE_MM = 2.5
IN_PLANE_RANGE_MM = (0.67, 1.5)
MAX_TILT_DEGREES = 30.0
ANISOTROPY = 1.5  # an axis coarser than this times the median spacing is the acquired slice axis


@dataclass(frozen=True)
class Finding:
    """One way a study differs from the training data: which check, what is wrong, what to do."""

    check: str
    reason: str
    remedy: str

    def __str__(self) -> str:
        return f"{self.reason}; {self.remedy}"


class OutOfDistribution(InputError):
    """A study the model was not trained for, said in one line: the findings, each remedy once, and --force.
    `findings` keeps them all.

    Swapped contrasts are said alone: the other checks judged the wrong images (T2 given as T1 has a bright
    rim of fluid that the skull check reads as scalp), so their findings would send the user the wrong way. A
    doubt about one input's contrast, less certain, is said first."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        shown = [f for f in findings if f.check == "contrast_identity"] or sorted(findings, key=lambda f: f.check != "contrast_doubt")
        by_remedy: dict[str, list[str]] = {}
        for finding in shown:
            by_remedy.setdefault(finding.remedy, []).append(finding.reason)
        said = "; ".join(f"{'; '.join(reasons)}, so {remedy}" for remedy, reasons in by_remedy.items())
        prepare = " (--prepare: prepare=PrepareOptions() in Python, 'Prepare raw study' in Slicer)" if "--prepare" in said else ""
        super().__init__(f"the study is not what the model was trained on (skull-stripped, co-registered, 1 mm, axial): {said}; "
                         f"or impute it as it is (--force){prepare}")


SAME_CONTRAST = "give each file as the contrast it is"


def check_study(study: PreparedStudy) -> list[Finding]:
    """Every finding for a prepared study (empty when it looks like the training data)."""
    return review_study(study)[0]


def review_study(study: PreparedStudy) -> tuple[list[Finding], list[str]]:
    """(check_study's findings, the doubts about single inputs' contrasts: contrast_identity.lone_identity_doubts),
    the histograms looked at once."""
    swaps, doubts = identity_notes(study)
    return [*_skull(study), *_geometry(study), *(Finding("contrast_identity", note, SAME_CONTRAST) for note in swaps)], doubts


def refuse_out_of_distribution(study: PreparedStudy, force: bool, strict: bool = False) -> None:
    """Raise OutOfDistribution when a check fails; with `force`, note the findings in the study instead. Doubts
    (contrast_identity.lone_identity_doubts) become notes, or are refused with `strict`."""
    findings, doubts = review_study(study)
    if findings and not force:
        raise OutOfDistribution([*findings, *(Finding("contrast_doubt", doubt, SAME_CONTRAST) for doubt in doubts)])
    study.notes += [f"imputed although {finding.reason} (--force)" for finding in findings]
    if doubts and strict:
        raise InputError(f"{doubts[0]} (refused: --strict)")
    study.notes += doubts


def bright_ring(study: PreparedStudy) -> tuple[str, float] | None:
    """(contrast, share of the mask's outer RING_MM brighter than the brain's 90th percentile) on T1, else
    T1Gd; None without either, or when the mask has no outer ring inside the grid (a crop within the brain)."""
    key = next((k for k in MAX_BRIGHT_RING if k in study.images), None)
    if key is None:
        return None
    in_plane = min(study.canonical_spacing[:2])
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)  # in plane only: thick slices must not erode whole slices
    core = ndimage.binary_erosion(study.mask, structure, iterations=max(1, round(RING_MM / in_plane)), border_value=1)
    ring = study.mask & ~core
    if ring.sum() < MIN_RING_VOXELS or core.sum() < MIN_RING_VOXELS:
        return None
    image = study.images[key]
    return key, float(np.mean(image[ring] > np.percentile(image[core], 90)))


def _skull(study: PreparedStudy) -> list[Finding]:
    remedy = "give a brain mask (--mask) or let --prepare extract the brain"
    findings = []
    volume = brain_ml(study)
    if volume > MAX_BRAIN_ML:
        findings.append(Finding("skull", f"the brain mask holds {volume:.0f} ml, more than a brain (training studies: at most "
                                f"{TRAINING_MAX_BRAIN_ML:.0f} ml): the study is not skull-stripped", remedy))
    ring = bright_ring(study)
    if ring is not None and ring[1] > MAX_BRIGHT_RING[ring[0]]:
        findings.append(Finding("skull", f"{100 * ring[1]:.0f} % of the mask's outer {RING_MM:g} mm is brighter than the brain on "
                                f"{display_name(ring[0])} (at most {100 * MAX_BRIGHT_RING[ring[0]]:.0f} % in skull-stripped "
                                "studies): scalp or skull is left around the brain", remedy))
    return findings


def slice_axis(grid: Grid) -> int:
    """The index axis the slices were acquired along: the one coarser than the other two, else the one
    nearest the head's superior-inferior axis."""
    spacing = np.array(grid.spacing)
    if spacing.max() > ANISOTROPY * np.median(spacing):
        return int(np.argmax(spacing))
    return int(np.argmax(np.abs(np.array(grid.direction).reshape(3, 3)[2])))


def tilt_from_axial(grid: Grid) -> float:
    """Degrees between the slice axis and the superior-inferior axis (0: axial slices)."""
    axis = np.array(grid.direction).reshape(3, 3)[:, slice_axis(grid)]
    return float(np.degrees(np.arccos(min(1.0, abs(axis[2]) / np.linalg.norm(axis)))))


def _geometry(study: PreparedStudy) -> list[Finding]:
    findings = []
    for key, grid in study.input_grids.items():
        name = display_name(key)
        thickest = max(grid.spacing)
        if thickest > MAX_SLICE_MM:
            findings.append(Finding("slice_thickness", f"{name} has {thickest:.3g} mm slices (training: {MODEL_SPACING_MM:g} mm)",
                                    "--prepare resamples it to 1 mm, though detail between slices cannot be recovered"))
        tilt = tilt_from_axial(grid)
        if tilt > MAX_TILT_DEGREES:
            axis = np.array(grid.direction).reshape(3, 3)[:, slice_axis(grid)]
            plane = ("sagittal", "coronal", "oblique")[int(np.argmax(np.abs(axis)))]
            findings.append(Finding("orientation", f"{name} was acquired in {plane} slices ({tilt:.0f} degrees from axial; "
                                    "the model reads axial slices)", "--prepare resamples it onto an axial grid"))
    low, high = IN_PLANE_RANGE_MM
    in_plane = study.canonical_spacing[:2]
    if not all(low <= s <= high for s in in_plane):
        findings.append(Finding("in_plane_spacing", f"the {display_name(study.reference_contrast)} grid the network runs on has "
                                f"{in_plane[0]:.3g} x {in_plane[1]:.3g} mm voxels in plane (training: {MODEL_SPACING_MM:g} mm)",
                                "--prepare resamples it to 1 mm"))
    return findings
