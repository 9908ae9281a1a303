"""What passes between the main thread and a worker: requests copied out of the scene before the work
starts (workers never touch MRML) and what comes back to become nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.orientations import DEFAULT_PLANES


@dataclass
class ImputationRequest:
    """An imputation of one loaded study, as images; the nodes ride along for the views, main thread only."""

    images: dict
    missing: str  # the contrast compared with the real volume and shown first
    alsoMissing: list = field(default_factory=list)  # other absent contrasts, imputed too
    weights: str | None = None
    device: str = "auto"
    mask: object = None
    reference: str | None = None
    real: object = None
    uncertainty: bool = False
    views: int = 1  # shifted and mirrored views averaged (synthesis.synthesise)
    planes: int = DEFAULT_PLANES  # 3: the axial, coronal and sagittal passes averaged; 1: the axial pass (synthesis.synthesise)
    force: bool = False  # impute a study that fails the out-of-distribution checks (their findings become notes)
    prepare: bool = False  # register, extract the brain, resample to 1 mm, impute, map back (brain_prep)
    inputNodes: dict = field(default_factory=dict)
    realNode: object = None

    @property
    def targets(self) -> list:
        return [self.missing, *self.alsoMissing]


@dataclass
class ImportanceRequest:
    """The contrast-importance analysis of one loaded study, as images."""

    images: dict  # every contrast of the model
    name: str
    labels: object = None
    segmenter: str = ""
    weights: str | None = None
    device: str = "auto"


@dataclass
class Comparison:
    metrics: dict
    difference: object  # SimpleITK image of |imputed - real| in the imputation's units


@dataclass
class ImputationOutcome:
    """The nodes one imputation added to the scene, and what it was made from."""

    outputNode: object  # the first contrast's; outputNodes has every imputed contrast's
    imputation: object
    modelName: str
    comparison: Comparison | None = None
    differenceNode: object = None
    outputNodes: dict = field(default_factory=dict)
    uncertaintyNodes: dict = field(default_factory=dict)
    maskNode: object = None  # the brain mask a prepared run extracted, as a segmentation
    inputNodes: dict = field(default_factory=dict)  # what the run imputed from, so its comparison shows that
    realNode: object = None
