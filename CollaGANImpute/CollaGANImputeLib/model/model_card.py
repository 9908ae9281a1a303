"""Model cards: the JSON beside every weights file, readable without PyTorch.

The card names the contrasts, the architecture, the normalisation, the training data and the metrics,
and holds the sha256 of the weights file. The Slicer panel reads cards (to build its input rows and
show what a model is) before PyTorch is even installed, so nothing here imports it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..core.contrasts import display_name
from ..core.errors import ModelError
from ..io.atomic import write_text_atomic

CARD_FORMAT = "collagan-impute-model/1"
BUNDLED_MODELS = Path(__file__).resolve().parents[2] / "Resources" / "Models"
BUNDLED_NAME = "collagan_brats"
INTENSITY_UNIT = (
    "brain standard deviations: the imputed volume is on the scale of a real volume of that contrast divided by "
    "the standard deviation of its brain voxels (METHOD.md normalisation); 0 outside the brain"
)
BRASYN_UNIT = (
    "BraSyn normalisation: the imputed volume is on the scale of a real volume of that contrast clipped to the "
    "0.5-99.5 percentiles of its brain voxels and scaled to [0, 1]; 0 outside the brain"
)


def sha256_of(path: Path) -> str:
    """The file's sha256, read in blocks (weights files are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_path_for(weights: Path) -> Path:
    return weights.with_suffix(".json")


def bundled_weights() -> Path:
    return BUNDLED_MODELS / f"{BUNDLED_NAME}.safetensors"


def read_card(weights: str | Path) -> dict:
    """The model card of a weights file (or the card given directly), checked by `validate_card`."""
    weights = Path(weights)
    card_file = weights if weights.suffix == ".json" else card_path_for(weights)
    if weights.suffix != ".json" and not weights.is_file() and not card_file.is_file():
        raise ModelError(f"weights file '{weights}' not found")
    if not card_file.is_file():
        raise ModelError(f"model card '{card_file}' not found; a weights file needs its JSON card beside it")
    if card_file.stat().st_size > MAX_CARD_BYTES:
        raise ModelError(f"model card '{card_file}' is {card_file.stat().st_size} bytes; a card is at most {MAX_CARD_BYTES}")
    try:
        card = json.loads(card_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"model card '{card_file}' is not valid JSON: {error}") from None
    except OSError as error:
        raise ModelError(f"model card '{card_file}' cannot be read: {error.strerror or error}") from None
    return validate_card(card, card_file)


# A card is read before anything it describes is trusted: every value that steers the work (sizes, smoothing
# widths, paths, names) is checked here, once, for every reader (the command line, the Slicer panel, load_model).
MAX_CARD_BYTES = 4 << 20
MAX_CONTRASTS = 16
CONTRAST_NAME = re.compile(r"[a-z][a-z0-9]{0,15}\Z")
# Contrasts become command-line options (impute takes --KEY PATH per contrast), so a contrast may not be named
# like an option of the commands; Testing/test_hardening.py checks every option of `impute` is listed here.
RESERVED_NAMES = frozenset({"study", "missing", "output", "strategy", "weights", "device", "mask", "reference", "uncertainty",
                            "views", "planes", "precision", "progress", "help", "overwrite", "strict", "prepare", "force"})
# Bounds of the values that set how much work an imputation is (the bundled model: 1.25 mm and 0.75 voxels;
# benchmarks/smoothing.py found the best under 2); wider smoothing would only blur, and costs time with its width.
MAX_THROUGH_PLANE_MM = 10.0
MAX_IN_PLANE_VOXELS = 4.0
GENERATOR_FIELDS = {"num_contrasts": (int, 2, MAX_CONTRASTS), "branch_width": (int, 2, 512), "decoder_width": (int, 2, 2048),
                    "depth": (int, 1, 8), "unit": (str, ("ccnl", "plain")), "ccam": (bool,), "context": (int, 0, 8)}


class _CardCheck:
    """Typed access to one card's fields; the first bad value ends with a ModelError naming the card and field."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def refuse(self, text: str) -> None:
        raise ModelError(f"model card '{self.source}': {text}")

    def fail(self, field: str, problem: str) -> None:
        """`field`: the dotted path of the value in the card, such as inference.in_plane_sigma_voxels."""
        self.refuse(f"'{field}' {problem}")

    def typed(self, value, field: str, kind: type | tuple[type, ...], what: str):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):  # JSON true is no number
            self.fail(field, f"is {_shown(value)}; expected {what}")
        return value

    def number(self, value, field: str, low: float, high: float, *, integer: bool = False) -> float:
        kind, what = (int, "a whole number") if integer else ((int, float), "a number")
        self.typed(value, field, kind, f"{what} from {low:g} to {high:g}")
        if not math.isfinite(value) or not low <= value <= high:
            self.fail(field, f"is {_shown(value)}; expected {what} from {low:g} to {high:g}")
        return value

    def strings(self, value, field: str) -> list[str]:
        self.typed(value, field, list, "a list of names")
        for index, item in enumerate(value):
            self.typed(item, f"{field}[{index}]", str, "a name")
        return value

    def optional(self, card: dict, key: str, kind: type, what: str):
        return self.typed(card[key], key, kind, what) if key in card else None


def _check_smoothing(widths: dict, field: str, check: _CardCheck) -> None:
    """The smoothing widths of `field` (absent: none) within what benchmarks/smoothing.py would ever choose."""
    check.number(widths.get("through_plane_sigma_mm", 0.0), f"{field}.through_plane_sigma_mm", 0.0, MAX_THROUGH_PLANE_MM)
    check.number(widths.get("in_plane_sigma_voxels", 0.0), f"{field}.in_plane_sigma_voxels", 0.0, MAX_IN_PLANE_VOXELS)


def _check_weights_file(value, field: str, check: _CardCheck) -> None:
    """A weights file is named, never pathed: the card can point at no file but one beside it."""
    name = check.typed(value, field, str, "a file name")
    if (PurePosixPath(name).name != name or PureWindowsPath(name).name != name or name.startswith(".")
            or not name.endswith(".safetensors")):
        check.fail(field, f"is {_shown(name)}; expected the name of a .safetensors file beside the card (no folder)")


def _shown(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_card(card: object, source: Path) -> dict:
    """The card itself once every field the engine reads has its type and range; otherwise a ModelError naming
    the card, the field and what was expected. Fields the engine does not read are left as they are."""
    check = _CardCheck(source)
    if not isinstance(card, dict):
        check.refuse(f"the card is {_shown(card)}; expected a JSON object")
    for key in ("format", "contrasts", "architecture", "sha256", "weights_file"):
        if key not in card:
            check.refuse(f"lacks the field '{key}'")
    if card["format"] != CARD_FORMAT:
        check.fail("format", f"is {_shown(card['format'])}; expected {CARD_FORMAT!r}")
    for key in ("name", "description", "output_intensity", "dtype"):
        check.optional(card, key, str, "a text")
    contrasts = check.strings(card["contrasts"], "contrasts")
    if not 2 <= len(contrasts) <= MAX_CONTRASTS or len(set(contrasts)) != len(contrasts):
        check.fail("contrasts", f"is {_shown(contrasts)}; expected 2 to {MAX_CONTRASTS} different names")
    for name in contrasts:
        if not CONTRAST_NAME.match(name):
            check.refuse(f"contrast {name!r} is not a contrast key: lower-case letters and digits, a letter first, at most 16")
        if name in RESERVED_NAMES:
            check.refuse(f"contrast {name!r} is the name of a command-line option (--{name}); a contrast needs another name")
    generator = check.typed(check.typed(card["architecture"], "architecture", dict, "an object with a 'generator'").get("generator"),
                            "architecture.generator", dict, "an object")
    for key, value in generator.items():
        spec = GENERATOR_FIELDS.get(key)
        field = f"architecture.generator.{key}"
        if spec is None:
            check.fail(field, f"is not a field of the generator ({', '.join(GENERATOR_FIELDS)})")
        elif spec[0] is int:
            check.number(value, field, spec[1], spec[2], integer=True)
        elif spec[0] is bool:
            check.typed(value, field, bool, "true or false")
        elif value not in spec[1]:
            check.fail(field, f"is {_shown(value)}; expected one of {', '.join(spec[1])}")
    if generator.get("num_contrasts", 4) != len(contrasts):
        check.fail("architecture.generator.num_contrasts", f"is {generator.get('num_contrasts', 4)} for {len(contrasts)} contrasts")
    _check_weights_file(card["weights_file"], "weights_file", check)
    if not isinstance(card["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", card["sha256"]):
        check.fail("sha256", f"is {_shown(card['sha256'])}; expected 64 lower-case hexadecimal digits")
    missing_inputs = check.optional(card, "missing_inputs", dict, "an object with 'min' and 'max'")
    if missing_inputs is not None:
        low = check.number(missing_inputs.get("min", 1), "missing_inputs.min", 1, len(contrasts) - 1, integer=True)
        check.number(missing_inputs.get("max", 1), "missing_inputs.max", low, len(contrasts) - 1, integer=True)
    inference = check.optional(card, "inference", dict, "an object")
    if inference is not None:
        _check_smoothing(inference, "inference", check)
        by_contrast = check.typed(inference.get("by_contrast", {}), "inference.by_contrast", dict, "an object")
        for key, widths in by_contrast.items():
            if key not in contrasts:
                check.fail(f"inference.by_contrast.{key}", "names no contrast of the card")
            _check_smoothing(check.typed(widths, f"inference.by_contrast.{key}", dict, "an object"), f"inference.by_contrast.{key}", check)
    companion = check.optional(card, "companion", dict, "an object with 'weights_file' and 'contrasts'")
    if companion is not None:
        _check_weights_file(companion.get("weights_file"), "companion.weights_file", check)
        served = check.strings(companion.get("contrasts"), "companion.contrasts")
        if not served or any(key not in contrasts for key in served):
            check.fail("companion.contrasts", f"is {_shown(served)}; expected one or more of the card's contrasts")
    for key in ("normalisation", "training", "metrics"):
        check.optional(card, key, dict, "an object")
    for key in ("train_subjects", "validation_subjects"):
        if key in card.get("training", {}):
            check.strings(card["training"][key], f"training.{key}")
    _check_error_model(card, contrasts, check)
    _check_intensity_landmarks(card, contrasts, check)
    for method, measured in (check.optional(card, "reliability_held_out", dict, "an object") or {}).items():
        field = f"reliability_held_out.{method}"
        check.typed(measured, field, dict, "an object with 'subjects' and 'spearman_brain'")
        check.strings(measured.get("subjects"), f"{field}.subjects")
        for contrast, rho in check.typed(measured.get("spearman_brain"), f"{field}.spearman_brain", dict, "an object").items():
            check.number(rho, f"{field}.spearman_brain.{contrast}", -1.0, 1.0)
    return card


def _check_error_model(card: dict, contrasts: list[str], check: _CardCheck) -> None:
    """The calibrated reliability map's coefficients: one finite number per feature and the intercept, per contrast."""
    block = check.optional(card, "error_model", dict, "an object")
    if block is None:
        return
    check.typed(block.get("spread"), "error_model.spread", str, "a method name")
    features = check.strings(block.get("features"), "error_model.features")
    check.number(block.get("window"), "error_model.window", 1, 64, integer=True)
    for contrast, coefficients in check.typed(block.get("coefficients"), "error_model.coefficients", dict, "an object").items():
        field = f"error_model.coefficients.{contrast}"
        if contrast not in contrasts:
            check.fail(field, f"names no contrast of the card ({', '.join(contrasts)})")
        if not isinstance(coefficients, list) or len(coefficients) != len(features) + 1:
            check.fail(field, f"is {_shown(coefficients)}; expected {len(features) + 1} numbers (one per feature and the intercept)")
        for index, value in enumerate(coefficients):
            check.number(value, f"{field}[{index}]", -1e6, 1e6)


def _check_intensity_landmarks(card: dict, contrasts: list[str], check: _CardCheck) -> None:
    """The landmark offsets imputations get (intensity_landmarks.py): increasing percentile levels, per contrast one
    finite offset per level, and optionally, for contrasts with offsets, one finite slope per level."""
    block = check.optional(card, "intensity_landmarks", dict, "an object with 'levels' and 'offsets'")
    if block is None:
        return
    levels = check.typed(block.get("levels"), "intensity_landmarks.levels", list, "a list of percentiles")
    for index, level in enumerate(levels):
        check.number(level, f"intensity_landmarks.levels[{index}]", 0.0, 100.0)
    if len(levels) < 2 or any(b <= a for a, b in zip(levels, levels[1:])):
        check.fail("intensity_landmarks.levels", f"is {_shown(levels)}; expected at least two increasing percentiles")
    for contrast, offsets in check.typed(block.get("offsets"), "intensity_landmarks.offsets", dict, "an object").items():
        field = f"intensity_landmarks.offsets.{contrast}"
        if contrast not in contrasts:
            check.fail(field, f"names no contrast of the card ({', '.join(contrasts)})")
        if not isinstance(offsets, list) or len(offsets) != len(levels):
            check.fail(field, f"is {_shown(offsets)}; expected {len(levels)} numbers (one per level)")
        for index, value in enumerate(offsets):
            check.number(value, f"{field}[{index}]", -1e3, 1e3)
    offsets = block["offsets"]
    for contrast, slopes in check.typed(block.get("slopes", {}), "intensity_landmarks.slopes", dict, "an object").items():
        field = f"intensity_landmarks.slopes.{contrast}"
        if contrast not in offsets:
            check.fail(field, "names a contrast without offsets; a line needs both")
        if not isinstance(slopes, list) or len(slopes) != len(levels):
            check.fail(field, f"is {_shown(slopes)}; expected {len(levels)} numbers (one per level)")
        for index, value in enumerate(slopes):
            check.number(value, f"{field}[{index}]", -1e3, 1e3)


def most_missing(card: dict) -> int:
    """How many absent inputs the model behind `card` was trained for: 1 for CollaGAN, N-1 for any subset."""
    return int(card.get("missing_inputs", {}).get("max", 1))


def update_card(weights: str | Path, fields: dict) -> Path:
    """Add or replace top-level fields of a model card (written atomically); the weights are untouched, so
    their sha256 still holds. Returns the card's path."""
    weights = Path(weights)
    card = read_card(weights)
    card.update(fields)
    path = weights if weights.suffix == ".json" else card_path_for(weights)
    validate_card(card, path)  # what is written can be read back
    write_text_atomic(path, json.dumps(card, indent=2) + "\n")
    return path


# Below this Spearman correlation of map and |error| over the brain of held-out subjects, a reliability map
# ranks the error too weakly to be read on its own (the reliability issue's bar). The card's
# "reliability_held_out" holds the figures, measured by benchmarks/reliability.py --write-card.
WEAK_RANKING = 0.3


def held_out_caveat(card: dict, method: str, contrast: str) -> str | None:
    """A note for the user where the model card records that `method`'s reliability map of `contrast` ranked
    the actual error weakly on held-out subjects (Spearman under WEAK_RANKING), else None: a low value in
    such a map is no sign that the imputation is right."""
    measured = card.get("reliability_held_out", {}).get(method)
    rho = None if measured is None else measured["spearman_brain"].get(contrast)
    if rho is None or rho >= WEAK_RANKING:
        return None
    return (f"the {method} reliability map of {display_name(contrast)} ranked the actual error weakly on held-out subject(s) "
            f"{', '.join(measured['subjects'])} (Spearman {rho:.2f}, under {WEAK_RANKING}): a low value there does not mean "
            "the imputation can be trusted")
