"""The CollaGAN Impute panel's parameter node: which volume plays which part. Selections live there (not in
the widgets) so that a saved scene reopens with them; these functions keep them consistent."""

from __future__ import annotations

from ..core.orientations import PLANE_ORDERS

INPUT_REFERENCE = "Input_"  # node-reference role prefix, one per contrast key ("Input_t1", ...)
DEFAULTS = {"Missing": "t1gd", "ModelPath": "", "Device": "auto", "Orientation": "Axial", "Reference": "", "Uncertainty": "false",
            "BestQuality": "false", "ThreePlanes": "true", "Prepare": "false"}


def set_defaults(parameters) -> None:
    """Fill every parameter not set yet."""
    for name, value in DEFAULTS.items():
        if not parameters.GetParameter(name):
            parameters.SetParameter(name, value)


def input_nodes(parameters, contrasts: list[str]) -> dict:
    """Contrast -> chosen node (None for an empty row) for every contrast of the model but the missing one."""
    missing = parameters.GetParameter("Missing")
    return {k: parameters.GetNodeReference(INPUT_REFERENCE + k) for k in contrasts if k != missing}


def set_missing(parameters, missing: str) -> None:
    """Change the missing contrast, swapping volumes so evaluation keeps making sense: the volume of the newly
    missing contrast becomes the real one, and the old real volume its contrast's input."""
    old = parameters.GetParameter("Missing")
    if missing == old:
        return
    oldReal = parameters.GetNodeReference("Real")
    newReal = parameters.GetNodeReference(INPUT_REFERENCE + missing)
    parameters.SetNodeReferenceID("Real", newReal.GetID() if newReal else None)
    if oldReal is not None and old and parameters.GetNodeReference(INPUT_REFERENCE + old) is None:
        parameters.SetNodeReferenceID(INPUT_REFERENCE + old, oldReal.GetID())
    parameters.SetParameter("Missing", missing)


def assign(parameters, found: dict) -> None:
    """Put volumes found by name in their rows: the missing contrast's volume becomes the real one."""
    missing = parameters.GetParameter("Missing")
    wasModified = parameters.StartModify()
    for key, volume in found.items():
        parameters.SetNodeReferenceID("Real" if key == missing else INPUT_REFERENCE + key, volume.GetID())
    parameters.EndModify(wasModified)


def model_choice(parameters) -> dict:
    """The weights and device chosen, as the logic's keyword arguments (empty path: the bundled model)."""
    return {"weights": parameters.GetParameter("ModelPath") or None, "device": parameters.GetParameter("Device")}


def imputation_options(parameters) -> dict:
    """The panel's check boxes as the logic's keyword arguments: a reliability map, a raw study prepared first, the
    8 averaged views (synthesis.VIEWS) and the three slice orientations (core.orientations: ticked by default)."""
    from ..inference.synthesis import VIEWS  # here, not above: PyTorch may be installed only on demand

    ticked = lambda name: parameters.GetParameter(name) == "true"  # noqa: E731
    return {"uncertainty": ticked("Uncertainty"), "prepare": ticked("Prepare"), "views": len(VIEWS) if ticked("BestQuality") else 1,
            "planes": len(PLANE_ORDERS) if ticked("ThreePlanes") else 1}
