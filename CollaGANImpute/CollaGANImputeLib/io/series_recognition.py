"""Which series of a clinical study is which contrast: scanner series names, DICOM tags, study folders.

A study straight off the scanner names its series the way the scanner's protocol does ("T1_AX_POST_GAD",
"t1_mprage_sag_p2_iso", "AX T1 +C", "T2W_TSE", "t2_tirm_tra_dark-fluid") and holds series the model does not
take (localisers, DWI and ADC, SWI, perfusion, ...). The rules here read a name as a radiographer would: the
last word that names a sequence decides the contrast (BraTS-style names put it last), a T1 with a
post-contrast word (POST, GAD, GD, CE, +C, contrast) is T1Gd unless a pre-contrast word says otherwise, fat
suppression (FS, FATSAT, SPIR, SPAIR) changes nothing, and a series whose name marks it as something else is
set aside with the reason. For a DICOM series, the SeriesDescription (else the ProtocolName, else the folder
name) is read the same way, and a T1 whose Contrast/Bolus Agent (0018,0010) is filled in is T1Gd.

The file-name tokens of each contrast live in contrasts.KNOWN_CONTRASTS; every entry point (command line,
batch, Slicer's Auto-assign through contrasts.match_contrast) goes through `recognise_name`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.contrasts import KNOWN_CONTRASTS, display_name, strip_volume_suffix
from ..core.errors import InputError

# Words that mark a series as none of the structural contrasts, with what the series is.
NOT_STRUCTURAL: dict[str, str] = {
    **dict.fromkeys(("localizer", "localiser", "loc", "scout", "survey", "3plane", "tripilot", "aahead", "aascout"), "a localiser"),
    **dict.fromkeys(("dwi", "diff", "diffusion", "dti", "trace", "tracew", "adc", "eadc", "b1000", "resolve"), "a diffusion series"),
    **dict.fromkeys(("swi", "swan", "minip", "mip", "pha", "phase", "mag", "t2star", "t2ffe", "hemo"), "a susceptibility series"),
    **dict.fromkeys(("perfusion", "perf", "dsc", "dce", "asl", "pcasl", "cbf", "cbv", "rcbv", "mtt"), "a perfusion series"),
    **dict.fromkeys(("tof", "mra", "angio", "venogram", "mrv"), "an angiogram"),
    **dict.fromkeys(("bold", "fmri", "rest", "resting"), "a functional series"),
    **dict.fromkeys(("svs", "csi", "spectroscopy", "mrs"), "spectroscopy"),
    **dict.fromkeys(("stir",), "a STIR series"),
}
POST_CONTRAST = frozenset(("post", "gad", "gado", "gd", "ce", "contrast", "postcontrast", "postgad", "postgd", "enhanced"))
PRE_CONTRAST = frozenset(("pre", "precontrast", "native", "nativ", "noncontrast", "without", "wo"))
# Agent values that mean none was given.
NO_AGENT = frozenset(("", "none", "no", "n/a", "na", "nil"))


@dataclass(frozen=True)
class Recognition:
    """The contrast a series name or DICOM header denotes (None when none or set aside) and why, in words."""

    contrast: str | None
    reason: str
    set_aside: bool = False  # a series that is something else (localiser, DWI, ...), not merely unnamed


def _normalise(name: str) -> str:
    """Spell out what tokenising would lose: '+C' / 'C+' (post contrast) and 'T2*' (a susceptibility series)."""
    text = re.sub(r"\+\s*c(?![a-z0-9])|(?<![a-z0-9])c\s*\+", " postcontrast ", name.lower())
    return re.sub(r"t2\s*\*", " t2star ", text)


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", _normalise(strip_volume_suffix(Path(name).name))) if w]


def _contrast_of_word(word: str, keys: Sequence[str]) -> str | None:
    for key in keys:
        contrast = KNOWN_CONTRASTS.get(key)
        if word == key or (contrast is not None and word in contrast.tokens):
            return key
    return None


def recognise_name(name: str, extra_keys: Sequence[str] = ()) -> Recognition:
    """Read a file, node or series name. Judged against every known contrast (plus `extra_keys`, the
    contrasts of a model the registry does not know), so a 'T1 POST GAD' is T1Gd even where T1Gd is not
    wanted, never a second T1."""
    words = _words(name)
    for index, word in enumerate(words):
        pair = word + words[index + 1] if index + 1 < len(words) else ""
        for candidate in (pair, word):
            if candidate in NOT_STRUCTURAL:
                return Recognition(None, f"{NOT_STRUCTURAL[candidate]} (word '{candidate}')", set_aside=True)
    keys = list(dict.fromkeys([*KNOWN_CONTRASTS, *extra_keys]))
    # From the end, a joined pair ('T1 FLAIR', 'DARK FLUID', 'T2 FLAIR') before its last word alone.
    for index in range(len(words) - 1, -1, -1):
        for candidate in ([words[index - 1] + words[index]] if index else []) + [words[index]]:
            key = _contrast_of_word(candidate, keys)
            if key is None:
                continue
            reason = f"named {display_name(key)} (word '{candidate}')"
            if key == "t1" and candidate not in ("t1n", "t1native", "t1pre"):
                post = sorted(POST_CONTRAST.intersection(words))
                if post and not PRE_CONTRAST.intersection(words):
                    return Recognition("t1gd", f"a T1 (word '{candidate}') after contrast (word '{post[0]}')")
            return Recognition(key, reason)
    return Recognition(None, "no word in it names a contrast")


@dataclass(frozen=True)
class DicomHeader:
    """The tags of a DICOM series that say what it is."""

    series_description: str
    protocol_name: str
    contrast_agent: str  # (0018,0010) Contrast/Bolus Agent
    series_count: int  # series in the folder; only a folder of one can be read as a volume


def read_dicom_header(folder: str | Path) -> DicomHeader | None:
    """The naming tags of the first series in `folder` (its first file's header only), or None when the
    folder holds no DICOM series."""
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])[0])
    reader.ReadImageInformation()

    def tag(key: str) -> str:
        return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""

    return DicomHeader(tag("0008|103e"), tag("0018|1030"), tag("0018|0010"), len(series))


def recognise_dicom(header: DicomHeader, folder_name: str, extra_keys: Sequence[str] = ()) -> Recognition:
    """A DICOM series: its SeriesDescription (else ProtocolName, else folder name) read as a name; a T1 with
    a Contrast/Bolus Agent is T1Gd."""
    label = header.series_description or header.protocol_name or folder_name
    found = recognise_name(label, extra_keys)
    agent = header.contrast_agent if header.contrast_agent.lower() not in NO_AGENT else ""
    if found.contrast == "t1" and agent:
        return Recognition("t1gd", f"a T1 ('{label}') with Contrast/Bolus Agent (0018,0010) '{agent}'")
    return Recognition(found.contrast, f"series '{label}': {found.reason}", found.set_aside)


@dataclass
class StudySeries:
    """What `recognise_study` made of a folder: one path per contrast, and every series it did not use, why."""

    files: dict[str, Path]
    reasons: dict[str, str]  # contrast -> why its series was taken
    unused: list[tuple[Path, str]] = field(default_factory=list)

    def describe(self) -> list[str]:
        """One line per contrast taken, for the user to check."""
        return [f"{display_name(k)} <- {p.name} ({self.reasons[k]})" for k, p in self.files.items()]


def recognise_study(folder: str | Path, contrasts: Sequence[str]) -> StudySeries:
    """One series per wanted contrast in a study folder of volume files and DICOM series sub-folders.

    Each series is recognised against every known contrast, then kept only when its contrast is wanted.
    Raises InputError listing the candidates when two or more series could be one contrast (the user then
    gives it explicitly); contrasts with no series are left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder")
    candidates: dict[str, list[tuple[Path, str]]] = {}
    unused: list[tuple[Path, str]] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and strip_volume_suffix(path.name) != path.name:
            found = recognise_name(path.name, contrasts)
        elif path.is_dir():
            header = read_dicom_header(path)
            if header is None:
                continue
            if header.series_count > 1:
                unused.append((path, f"holds {header.series_count} DICOM series; put each in a folder of its own"))
                continue
            found = recognise_dicom(header, path.name, contrasts)
        else:
            continue
        if found.contrast in contrasts:
            candidates.setdefault(found.contrast, []).append((path, found.reason))
        else:
            unused.append((path, found.reason if found.contrast is None else f"{found.reason}, not wanted here"))
    for key, paths in candidates.items():
        if len(paths) > 1:
            listed = "; ".join(f"{p.name} ({why})" for p, why in paths)
            raise InputError(f"{display_name(key)}: two or more series in '{folder}' match it: {listed}. "
                             f"Give the one to use explicitly (--{key} PATH, or choose it in the panel)")
    return StudySeries({k: v[0][0] for k, v in candidates.items()}, {k: v[0][1] for k, v in candidates.items()}, unused)


def match_contrast(name: str, candidates: list[str] | tuple[str, ...] | None = None) -> str | None:
    """The contrast a file, node or series name denotes, if it is one of `candidates` (default: any known).

    The name is read against every known contrast first (recognise_name), so a name
    that denotes another contrast ('T1_AX_POST_GAD' where only T1 is wanted) matches nothing.
    """
    keys = list(candidates) if candidates is not None else list(KNOWN_CONTRASTS)
    found = recognise_name(name, keys).contrast
    return found if found in keys else None


def find_study_files(folder: str | Path, contrasts: list[str] | tuple[str, ...]) -> dict[str, Path]:
    """Map each contrast to the one volume file or DICOM series folder in `folder` that denotes it
    (recognise_study).

    Raises InputError listing the candidates when two or more series claim a contrast; contrasts with no
    series are left out.
    """
    return recognise_study(folder, contrasts).files
