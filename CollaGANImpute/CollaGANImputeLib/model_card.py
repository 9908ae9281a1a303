"""Model cards: the JSON beside every weights file, readable without PyTorch.

The card names the contrasts, the architecture, the normalisation, the training data and the metrics,
and holds the sha256 of the weights file. The Slicer panel reads cards (to build its input rows and
show what a model is) before PyTorch is even installed, so nothing here imports it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .atomic import write_text_atomic
from .contrasts import display_name
from .errors import ModelError

CARD_FORMAT = "collagan-impute-model/1"
BUNDLED_MODELS = Path(__file__).resolve().parents[1] / "Resources" / "Models"
BUNDLED_NAME = "collagan_brats"
INTENSITY_UNIT = (
    "brain standard deviations: the imputed volume is on the scale of a real volume of that contrast divided by "
    "the standard deviation of its brain voxels (METHOD.md normalisation); 0 outside the brain"
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
    """The model card of a weights file (or the card given directly)."""
    weights = Path(weights)
    card_file = weights if weights.suffix == ".json" else card_path_for(weights)
    if weights.suffix != ".json" and not weights.is_file() and not card_file.is_file():
        raise ModelError(f"weights file '{weights}' not found")
    if not card_file.is_file():
        raise ModelError(f"model card '{card_file}' not found; a weights file needs its JSON card beside it")
    try:
        card = json.loads(card_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"model card '{card_file}' is not valid JSON: {error}") from None
    for key in ("format", "contrasts", "architecture", "sha256", "weights_file"):
        if key not in card:
            raise ModelError(f"model card '{card_file}' lacks the field '{key}'")
    if card["format"] != CARD_FORMAT:
        raise ModelError(f"model card '{card_file}' has format {card['format']!r}; expected {CARD_FORMAT!r}")
    return card


def update_card(weights: str | Path, fields: dict) -> Path:
    """Add or replace top-level fields of a model card (written atomically); the weights are untouched, so
    their sha256 still holds. Returns the card's path."""
    weights = Path(weights)
    card = read_card(weights)
    card.update(fields)
    path = weights if weights.suffix == ".json" else card_path_for(weights)
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
