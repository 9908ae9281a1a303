"""Impute from volume nodes and turn the result into nodes: the part of CollaGANImpute's logic that works on
a scene and needs no application. Methods are camelCase because they are the Slicer logic's API (the
console calls them as `CollaGANImputeLogic().impute(...)`)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..core.contrasts import display_name
from ..core.errors import Cancelled, InputError
from ..core.jobs import ThreadJob
from ..core.orientations import DEFAULT_PLANES
from ..io import mrml
from ..io.series_recognition import match_contrast
from ..model.model_card import most_missing
from .requests import Comparison, ImputationOutcome, ImputationRequest

ROLE_ATTRIBUTE = "CollaGANImpute.Role"  # "imputed", "difference" or "uncertainty" on nodes this module made
UNCERTAINTY_COLORS = "vtkMRMLPETProceduralColorNodePET-Heat"  # the reliability overlay's colour map


class ImputationLogic:
    """Models, inputs, imputation and scoring on volume nodes.

    How work runs in the application: `startImputation` runs `computeImputation` in a worker thread
    (core.jobs.ThreadJob) that the panel polls from a QTimer. Chosen over a background process because the
    volumes go to the engine and come back in memory, so there are no temporary files to write or clean up,
    cancel is the engine's own `cancel` callback (checked between slice batches, so nothing is half made),
    and PyTorch releases the GIL while it computes. Nodes are read before the thread starts and created
    after it ends, on the main thread.
    """

    def __init__(self) -> None:
        self._models: dict = {}
        self._modelLock = threading.Lock()  # the imputation and the analysis workers may ask at once
        self.lastOutcome: ImputationOutcome | None = None

    # ----- models --------------------------------------------------------------------------------
    @staticmethod
    def modelCard(weights: str | None = None) -> dict:
        """The model card of `weights` (the bundled model when empty) without loading the weights."""
        from ..model.model_card import bundled_weights, read_card

        return read_card(weights or bundled_weights())

    def model(self, weights: str | None = None, device: str = "auto"):
        """A loaded model (sha256-checked), cached per weights file and device."""
        from ..inference.synthesis import select_device
        from ..model.model_card import bundled_weights
        from ..model.weights import load_model

        path = Path(weights) if weights else bundled_weights()
        key = (str(path.resolve()), str(select_device(device)), path.stat().st_mtime if path.exists() else 0)
        with self._modelLock:
            if key not in self._models:
                self._models = {key: load_model(path, select_device(device))}
            return self._models[key]

    mostMissing = staticmethod(most_missing)  # model_card.most_missing: absent inputs the model was trained for

    # ----- inputs --------------------------------------------------------------------------------
    @staticmethod
    def assignVolumes(contrasts: list[str], scene=None) -> dict:
        """Contrast -> the one scalar volume whose name denotes it (series_recognition.match_contrast).

        Volumes this module made are skipped; a contrast two volumes claim is left out.
        """
        found: dict = {}
        for node in mrml.scalar_volume_nodes(scene):
            key = None if node.GetAttribute(ROLE_ATTRIBUTE) else match_contrast(node.GetName(), contrasts)
            if key is not None:
                found.setdefault(key, []).append(node)
        return {key: nodes[0] for key, nodes in found.items() if len(nodes) == 1}

    @staticmethod
    def inputProblems(contrasts: list[str], missing: str, inputs: dict, mostMissing: int = 1) -> list[str]:
        """What keeps the inputs from being imputed, in words for the Impute button's tooltip.

        Rows left empty are absent and imputed as well, as far as the model was trained for absent
        inputs (`mostMissing`, the card's missing_inputs max).
        """
        if missing not in contrasts:
            return [f"Choose the missing contrast (the model imputes {', '.join(display_name(k) for k in contrasts)})"]
        needed = [k for k in contrasts if k != missing]
        problems = []
        absent = [k for k in needed if inputs.get(k) is None]
        if len(absent) == len(needed):
            problems.append(f"Select at least one input volume ({', '.join(display_name(k) for k in needed)})")
        elif len(absent) + 1 > mostMissing and absent:
            problems.append(f"Select a volume for {', '.join(display_name(k) for k in absent)} (this model was trained with "
                            f"{mostMissing} missing contrast{'s' if mostMissing > 1 else ''}; a model trained for any subset "
                            "imputes the empty rows too)")
        seen: dict = {}
        for key in needed:
            node = inputs.get(key)
            if node is None:
                continue
            if node.GetImageData() is None:
                problems.append(f"{display_name(key)}: volume '{node.GetName()}' holds no image data")
            if node.GetID() in seen:
                problems.append(f"{display_name(seen[node.GetID()])} and {display_name(key)} are the same volume '{node.GetName()}'")
            seen.setdefault(node.GetID(), key)
        return problems

    # ----- imputation ----------------------------------------------------------------------------
    def prepareImputation(self, inputs: dict, missing: str, *, mask=None, reference: str | None = None, real=None,
                          weights: str | None = None, device: str = "auto", uncertainty: bool = False,
                          views: int = 1, planes: int = DEFAULT_PLANES, force: bool = False, prepare: bool = False) -> ImputationRequest:
        """Copy the input nodes into images (main thread). Inputs are only read; every contrast of the
        model without an input is imputed too (`missing` first). `views` > 1 averages that many shifted
        and mirrored views (8 views: 8 to 11 times as long; docs/model.md); `planes` 3 (the default) averages the axial,
        coronal and sagittal passes, 1 is the axial pass alone (a third of the time, worse: docs/validation_rule.md). `prepare` brings a raw
        study to the model's form first (registration, brain extraction: `mask` if given, else ROBEX; 1 mm)."""
        card = self.modelCard(weights)
        contrasts = card["contrasts"]
        given = {k: v for k, v in inputs.items() if v is not None}
        problems = self.inputProblems(contrasts, missing, given, self.mostMissing(card))
        if problems:
            raise InputError("; ".join(problems))
        extra = [k for k in given if k not in contrasts or k == missing]
        if extra:
            raise InputError(f"{', '.join(display_name(k) for k in extra)}: not an input of this imputation "
                             f"(the model takes {', '.join(display_name(k) for k in contrasts)}; {display_name(missing)} is imputed)")
        return ImputationRequest(
            images=images_from_nodes(given), missing=missing, alsoMissing=[k for k in contrasts if k != missing and k not in given],
            weights=weights or None, device=device,
            mask=mrml.image_from_node(mask) if mask is not None else None, reference=reference or None,
            real=mrml.image_from_node(real) if real is not None else None, uncertainty=uncertainty,
            views=views, planes=planes, force=force, prepare=prepare, inputNodes=dict(given), realNode=real,
        )

    def computeImputation(self, request: ImputationRequest, progress=None, cancel=None) -> tuple:
        """The engine's work, safe in a worker thread: (imputations by contrast, model name, comparison or None)."""
        from ..inference.imputation import impute_all
        from ..preparation.brain_prep import PrepareOptions

        report = progress or (lambda done, total, stage: None)
        names = ", ".join(display_name(k) for k in request.targets)
        report(0, 0, "Loading the model")
        model = self.model(request.weights, request.device)
        report(0, 0, "Preparing the study (resampling, brain mask, normalisation)")
        prepare = PrepareOptions(on_step=lambda step: report(0, 0, f"Preparing the raw study: {step}")) if request.prepare else None
        imputations = impute_all(
            request.images, request.targets, model, mask=request.mask, reference=request.reference,
            uncertainty=request.uncertainty, views=request.views, planes=request.planes, force=request.force, prepare=prepare,
            progress=lambda done, total: report(done, total, f"Imputing {names}: {done} of {total} slice passes"),
            cancel=cancel,
        )
        comparison = None
        if request.real is not None:
            if cancel is not None and cancel():
                raise Cancelled("imputation cancelled")
            report(0, 0, f"Scoring against the real {display_name(request.missing)}")
            comparison = self.compare(imputations[request.missing], request.real)
        return imputations, model.name, comparison

    @staticmethod
    def compare(imputation, real) -> Comparison:
        """SSIM/PSNR/NMSE (the engine's score_imputation) and |imputed - real| on the imputation's grid."""
        from ..analysis.evaluation import score_imputation
        from ..io.geometry import to_canonical_array

        metrics, real_array = score_imputation(imputation, real)
        difference = np.abs(to_canonical_array(imputation.image) - real_array)
        return Comparison(metrics, imputation.study.to_reference_image(difference))

    def startImputation(self, request: ImputationRequest) -> ThreadJob:
        """Run `computeImputation` in a worker thread; poll the job, then call `finishImputation`."""
        return ThreadJob(lambda job: self.computeImputation(request, job.report, lambda: job.cancelled),
                         stage="Starting").start()

    def finishImputation(self, request: ImputationRequest, computed: tuple) -> ImputationOutcome:
        """Turn a finished computation into new nodes (main thread); on failure none is left behind."""
        imputations, modelName, comparison = computed
        created = []
        try:
            outputs, uncertainties = {}, {}
            for key in request.targets:
                name = display_name(key)
                output = mrml.add_volume_node(imputations[key].image, f"{name} (CollaGAN)")
                created.append(output)
                output.SetAttribute(ROLE_ATTRIBUTE, "imputed")
                output.SetAttribute("CollaGANImpute.Model", modelName)
                output.SetAttribute("CollaGANImpute.Units", "brain standard deviations")
                mrml.set_window_to_brain(output)
                outputs[key] = output
                if imputations[key].uncertainty is not None:
                    uncertainties[key] = add_map_node(imputations[key].uncertainty, f"{name} (CollaGAN) uncertainty", "uncertainty",
                                                      imputations[key].uncertainty_meaning, UNCERTAINTY_COLORS)
                    created.append(uncertainties[key])
            outcome = ImputationOutcome(outputs[request.missing], imputations[request.missing], modelName, comparison,
                                        outputNodes=outputs, uncertaintyNodes=uncertainties,
                                        inputNodes=request.inputNodes, realNode=request.realNode)
            if comparison is not None:
                outcome.differenceNode = add_difference_node(comparison, request.missing)
                created.append(outcome.differenceNode)
            if request.prepare:  # the brain the preparation found, to check before trusting the result
                study = outcome.imputation.study
                outcome.maskNode = mrml.add_segmentation_node(study.to_reference_image(study.mask.astype(np.float32)),
                                                              "Brain mask (CollaGAN prepare)", "Brain")
                created.append(outcome.maskNode)
        except Exception:
            for node in created:
                mrml.remove_node(node)
            raise
        self.lastOutcome = outcome
        return outcome

    def impute(self, inputs: dict, missing: str, *, mask=None, reference: str | None = None, real=None,
               weights: str | None = None, device: str = "auto", uncertainty: bool = False, views: int = 1, planes: int = DEFAULT_PLANES,
               force: bool = False, prepare: bool = False, progress=None, cancel=None):
        """Impute `missing` from `inputs` ({"t1": node, ...}) and return the new volume node.

        Blocking (console use). Contrasts of the model with no input are imputed too, when the model
        was trained for that (`lastOutcome.outputNodes` holds them all). With `real` (the real volume of
        `missing`), `lastOutcome.comparison` holds the metrics and `lastOutcome.differenceNode` the
        |difference| volume; with `uncertainty`, `lastOutcome.uncertaintyNodes` the reliability maps; with
        `prepare` (a raw study), `lastOutcome.maskNode` the brain it found, as a segmentation.
        Raises the engine's InputError/ModelError, or Cancelled; the scene then holds no new node.
        """
        request = self.prepareImputation(inputs, missing, mask=mask, reference=reference, real=real,
                                         weights=weights, device=device, uncertainty=uncertainty, views=views, planes=planes,
                                         force=force, prepare=prepare)
        return self.finishImputation(request, self.computeImputation(request, progress, cancel)).outputNode

    def currentOutcome(self, outputNode=None) -> ImputationOutcome | None:
        """The last imputation while its output node is still in the scene (and made `outputNode`, when given:
        any of its imputed contrasts)."""
        outcome = self.lastOutcome
        if outcome is None or not mrml.in_scene(outcome.outputNode):
            return None
        if outputNode is not None and outputNode.GetID() not in {n.GetID() for n in outcome.outputNodes.values()}:
            return None
        return outcome

    def evaluate(self, realNode) -> dict:
        """Score the last imputation against `realNode` (the real volume of its missing contrast); replaces
        the last |difference| volume."""
        outcome = self.currentOutcome()
        if outcome is None:
            raise InputError("there is no imputation to score: impute first (scoring uses that run's brain mask)")
        comparison = self.compare(outcome.imputation, mrml.image_from_node(realNode))
        difference = add_difference_node(comparison, outcome.imputation.missing)
        if mrml.in_scene(outcome.differenceNode):
            mrml.remove_node(outcome.differenceNode)
        outcome.comparison, outcome.differenceNode, outcome.realNode = comparison, difference, realNode
        return comparison.metrics

    def comparisonOf(self, outputNode) -> dict | None:
        """The showComparison arguments for an output of the last run, as that run was made: its inputs, the
        real volume and |difference| when the output is the contrast it scored, the output's reliability map
        and the run's other outputs, each while still in the scene. None for a volume the run did not make."""
        outcome = self.currentOutcome(outputNode) if outputNode is not None else None
        if outcome is None:
            return None

        def present(node):  # the user may have deleted some since
            return node if mrml.in_scene(node) else None

        shown = next(k for k, n in outcome.outputNodes.items() if n.GetID() == outputNode.GetID())
        scored = shown == outcome.imputation.missing
        return {"inputNodes": {k: present(n) for k, n in outcome.inputNodes.items()}, "outputNode": outputNode,
                "realNode": present(outcome.realNode) if scored else None,
                "differenceNode": present(outcome.differenceNode) if scored else None,
                "uncertaintyNode": present(outcome.uncertaintyNodes.get(shown)),
                "otherOutputs": {k: n for k, n in outcome.outputNodes.items() if k != shown and present(n)}}


def images_from_nodes(nodes: dict) -> dict:
    """Contrast -> SimpleITK image of each node; an unreadable node's error names its contrast."""
    images = {}
    for key, node in nodes.items():
        try:
            images[key] = mrml.image_from_node(node)
        except InputError as error:
            raise InputError(f"{display_name(key)}: {error}") from None
    return images


def add_difference_node(comparison: Comparison, contrast: str):
    """The |imputed - real| map of a scored imputation of `contrast`."""
    return add_map_node(comparison.difference, f"{display_name(contrast)} |difference|", "difference")


def add_map_node(image, name: str, role: str, units: str = "", colors: str | None = None):
    """A |difference| or reliability map (the model's expected error, or the spread of its predictions),
    windowed from 0 to its 99th brain percentile; taken out of the scene again if dressing it fails."""
    node = mrml.add_volume_node(image, name)
    try:
        node.SetAttribute(ROLE_ATTRIBUTE, role)
        if units:
            node.SetAttribute("CollaGANImpute.Units", units)
        mrml.set_window_to_brain(node, 0.0, 99.0)
        display = node.GetDisplayNode()
        if colors and display is not None:
            display.SetAndObserveColorNodeID(colors)
    except Exception:
        mrml.remove_node(node)
        raise
    return node
