"""Imputing missing contrasts of a whole study on the reference grid: the request plan (joint or chained),
the checks before and after, the optional reliability map, and the prepare-impute-map-back pipeline for
studies not yet in the model's form (preparation.brain_prep)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..core.contrasts import display_name
from ..core.errors import InputError, ModelError
from ..core.orientations import DEFAULT_PLANES, check_planes
from ..model.model_card import held_out_caveat
from ..model.networks import Generator
from ..model.weights import Model
from ..preparation.brain_extraction import load_brain_extractor, mask_extractor
from ..preparation.brain_prep import PrepareOptions, prepare_inputs, to_reference, write_intermediate
from ..preparation.ood_checks import refuse_out_of_distribution
from ..preparation.study import PreparedStudy, VolumeSource, load_volume, prepare_study
from .intensity_landmarks import model_landmarks
from .synthesis import CancelCheck, Progress, check_views, method_of, model_inputs, model_smoothing, synthesise


@dataclass
class Imputation:
    """The imputed volume on the reference grid, the prepared study it came from, notes for the user,
    and optionally the reliability map (reliability.py) on the same grid."""

    image: sitk.Image
    missing: str
    study: PreparedStudy
    uncertainty: sitk.Image | None = None
    uncertainty_meaning: str | None = None  # what the reliability map's values are (reliability.describe)
    method: str = ""  # how the network imputed it (synthesis.method_of): orientations, views, arithmetic

    @property
    def notes(self) -> list[str]:
        return self.study.notes



STRATEGIES = ("auto", "joint", "chain")


def plan_request(model: Model, inputs: Mapping[str, object], missing: Sequence[str], strategy: str = "auto") -> str:
    """Check a request and choose how to serve it; returns "joint" or "chain".

    Every contrast of the model that is not an input is absent (zero-filled). "joint" imputes each
    missing contrast from the inputs alone, which needs a model trained with that many absent inputs
    (MM-GAN style, card field missing_inputs); "chain" imputes the absent contrasts one after another
    in model order, each from the inputs and the ones imputed before it; "auto" is "joint" where the
    model allows it.
    """
    contrasts = model.contrasts
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if not missing:
        raise InputError("no contrast to impute was given")
    for key in missing:
        if key not in contrasts:
            raise InputError(f"missing contrast {display_name(key)}: model '{model.name}' imputes only {', '.join(contrasts)}")
        if key in inputs:
            raise InputError(f"{display_name(key)} is a contrast to impute, so it cannot also be an input")
    if len(set(missing)) != len(missing):
        raise InputError(f"a contrast to impute was named twice: {', '.join(display_name(k) for k in missing)}")
    unknown = [k for k in inputs if k not in contrasts]
    if unknown:
        raise InputError(
            f"{', '.join(display_name(k) for k in unknown)}: model '{model.name}' does not take this contrast (it takes {', '.join(contrasts)})"
        )
    if not inputs:
        raise InputError(f"no input volume was given; model '{model.name}' needs at least one of {', '.join(contrasts)}")
    absent = [k for k in contrasts if k not in inputs]
    if strategy == "chain":
        return "chain"
    if len(absent) <= model.most_missing:
        return "joint"
    if strategy == "joint":
        raise InputError(f"model '{model.name}' was trained with at most {model.most_missing} absent contrast(s); "
                         f"{len(absent)} are absent here ({', '.join(display_name(k) for k in absent)})")
    lacking = [k for k in absent if k not in missing]
    raise InputError(
        f"model '{model.name}' was trained with {model.most_missing} absent contrast(s) and needs "
        f"{', '.join(display_name(k) for k in contrasts if k not in missing)} to impute {', '.join(display_name(k) for k in missing)}"
        + (f"; no volume was given for {', '.join(display_name(k) for k in lacking)}" if lacking else "")
        + ". Give them, use a model trained for any subset, or chain one-missing imputations (strategy 'chain')"
    )


def synthesise_missing(
    generator: Generator,
    stack: np.ndarray,
    targets: Sequence[int],
    mask: np.ndarray,
    *,
    strategy: str = "joint",
    absent: Sequence[int] = (),
    finish: Callable[[int, np.ndarray], np.ndarray] | None = None,
    smoothing: Mapping[int, tuple[float, float]] | None = None,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
    **options,
) -> dict[int, np.ndarray]:
    """Synthesise several contrasts of a canonical study; `stack` as for `synthesise`, absent channels zero.

    "joint": each target from the present inputs alone. "chain": the absent channels (`absent`, in
    that order, defaulting to `targets`) one after another, each written into the stack before the
    next is imputed. `finish(index, volume)`, where given, turns each network output into the
    imputation (the card's landmark offsets) before it is kept or chained. `smoothing`: each index's
    widths for `synthesise` (none where absent). Other keyword options go to `synthesise`. Returns target
    index -> (S, H, W).
    """
    order = list(targets) if strategy == "joint" else list(dict.fromkeys([*absent, *targets]))
    stack = stack.copy() if strategy == "chain" else stack
    results: dict[int, np.ndarray] = {}
    for number, index in enumerate(order):
        step = None if progress is None else (lambda done, total, n=number: progress(n * total + done, len(order) * total))
        results[index] = synthesise(generator, stack, index, mask, progress=step, cancel=cancel,
                                    smoothing=(smoothing or {}).get(index, (0.0, 0.0)), **options)
        if finish is not None:
            results[index] = finish(index, results[index])
        if strategy == "chain":
            stack[index] = results[index]
    return {index: results[index] for index in targets}


def impute_all(
    inputs: Mapping[str, VolumeSource],
    missing: Sequence[str],
    model: Model,
    *,
    strategy: str = "auto",
    mask: VolumeSource | None = None,
    reference: str | None = None,
    batch_size: int = 8,
    bf16: bool | None = None,
    views: int = 1,
    planes: int = DEFAULT_PLANES,
    uncertainty: bool = False,
    strict: bool = False,
    force: bool = False,
    prepare: PrepareOptions | None = None,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> dict[str, Imputation]:
    """Impute every contrast in `missing` from `inputs` (contrast key -> file path or SimpleITK image).

    Any non-empty subset of the model's contrasts may be given; the others are absent. See
    `plan_request` for the strategies. Each result lies on the reference grid (the first input in the
    model's order unless `reference` says otherwise) with its origin, spacing and direction exactly;
    intensities are in brain standard deviations (see the model card's output_intensity) and zero
    outside the brain mask. Inputs are only read. `bf16` autocast is faster, within the tolerance
    README documents (default None: on a CPU with bf16 arithmetic, `synthesis.native_bf16`); `views` > 1 averages
    that many shifted and mirrored views (`synthesise`), slower; `planes` 3 (the default) averages the study's axial,
    coronal and sagittal passes, 1 is the axial pass alone (a third of the work; worse on the validation subjects:
    docs/validation_rule.md). With `uncertainty`, each result also carries its reliability map
    (reliability.reliability_map; `uncertainty_meaning` says its unit): the card's error model where the
    model was calibrated, else the spread over input subsets for a model trained for any subset, else over
    flipped and shifted canvases; it costs 2-4 (subsets) to about 40 (flips) imputations, and is that of the
    one-view, axial imputation whatever `views` and `planes` are. `strict` refuses inputs that only look wrong (`prepare_study`).
    A model whose card names a companion for one missing contrast hands it the requests it serves
    (`Model.serving`), except those with a reliability map. An imputation that is not finite everywhere, or is
    zero in the whole brain, is refused (ModelError).
    A study unlike the training data (ood_checks: not skull-stripped, thick or non-axial slices, another
    in-plane spacing, swapped contrasts) is refused with its reasons (ood_checks.OutOfDistribution) unless
    `force` (the findings become notes) or `prepare` (brain_prep: register, extract the brain, resample to
    1 mm, impute, map back onto the reference grid).
    """
    chosen = plan_request(model, inputs, missing, strategy)
    check_views(views)
    check_planes(planes)
    if prepare is not None:
        return impute_prepared(inputs, missing, model, prepare, reference=reference, mask=mask, cancel=cancel, strategy=strategy,
                               batch_size=batch_size, bf16=bf16, views=views, planes=planes, uncertainty=uncertainty, strict=strict,
                               force=force, progress=progress)
    # A reliability map is the error model of the model it was calibrated for, so a request for one keeps that model.
    served = model if uncertainty else model.serving(missing, inputs)
    contrasts = model.contrasts
    study = prepare_study(inputs, contrasts, reference=reference, mask=mask, strict=strict)
    refuse_out_of_distribution(study, force, strict)
    if served is not model:
        study.notes.append(f"{display_name(missing[0])} imputed by '{served.name}', the companion of model '{model.name}' for one "
                           "missing contrast with every other contrast given")
        model = served
    absent = [k for k in contrasts if k not in inputs]
    if chosen == "chain" and len(absent) > 1:
        study.notes.append(f"chained imputations: {' -> '.join(display_name(k) for k in absent)}, each from the inputs and the "
                           "ones imputed before it")
    if len(absent) > model.most_missing:
        study.notes.append(f"model '{model.name}' was trained with {model.most_missing} absent contrast(s) and {len(absent)} are "
                           "absent here: expect lower quality than with the missing contrast alone absent")
    if model.bias_corrected:
        study.notes.append(f"inputs freed of their coil shading (N4) first, as model '{model.name}' was trained")
    stack = model_inputs(model, study)
    smoothing = {contrasts.index(k): model_smoothing(model, k, study.slice_spacing) for k in contrasts}
    volumes = synthesise_missing(
        model.generator, stack, [contrasts.index(k) for k in missing], study.mask,
        strategy=chosen, absent=[contrasts.index(k) for k in absent], progress=progress, cancel=cancel,
        finish=lambda index, volume: model_landmarks(model, contrasts[index], volume, study.mask),
        batch_size=batch_size, bf16=bf16, smoothing=smoothing, views=views, planes=planes,
    )
    for key in missing:
        require_usable_output(volumes[contrasts.index(key)], study.mask, model, key)
    method = method_of(model.generator, planes, views, bf16)
    results = {key: Imputation(study.to_reference_image(volumes[contrasts.index(key)]), key, study, method=method) for key in missing}
    if uncertainty:
        from .reliability import available_methods, describe, reliability_map

        # The most informative map the model offers (benchmarks/results/reliability.md): its error model where
        # calibrated, else the spread over input subsets (4 predictions), else over canvases (24).
        method = available_methods(model.card, len(inputs))[0]
        for key in missing:  # the progress count starts again for each map
            _, reliability = reliability_map(model, stack, contrasts.index(key), study.mask, method=method, batch_size=batch_size,
                                             present=[contrasts.index(k) for k in inputs], smoothing=smoothing[contrasts.index(key)],
                                             progress=progress, cancel=cancel)
            results[key].uncertainty = study.to_reference_image(reliability)
            results[key].uncertainty_meaning = describe(method)
            caveat = held_out_caveat(model.card, method, key)
            if caveat:
                study.notes.append(caveat)
    return results


def require_usable_output(volume: np.ndarray, mask: np.ndarray, model: Model, key: str) -> None:
    """Refuse what no real volume looks like and nothing should be written as: NaN or infinite voxels (weights or
    inputs that overflow), or nothing but zeros in the brain."""
    bad = int(np.count_nonzero(~np.isfinite(volume)))
    if bad:
        raise ModelError(f"model '{model.name}' imputed {display_name(key)} with {bad} NaN or infinite voxels; nothing was written")
    if not np.any(volume[mask]):
        raise ModelError(f"model '{model.name}' imputed {display_name(key)} as zero in the whole brain; nothing was written")


def impute(inputs: Mapping[str, VolumeSource], missing: str, model: Model, **options) -> Imputation:
    """Impute one contrast: `impute_all` with a single missing contrast (same options)."""
    return impute_all(inputs, [missing], model, **options)[missing]


def impute_prepared(inputs: Mapping[str, VolumeSource], missing: Sequence[str], model: Model, options: PrepareOptions, *,
                    reference: str | None = None, mask: VolumeSource | None = None,
                    cancel: Callable[[], bool] | None = None, **impute_options) -> dict[str, Imputation]:
    """The whole pipeline: prepare, impute on the model grid (imputation.impute_all, whose checks still apply),
    map back. Each result lies on the reference grid; its `study` is the registered inputs on that grid with
    the extracted brain mask (so it scores against a real volume there), and its notes say what was done."""

    available = [key for key in model.contrasts if key in inputs]
    reference_key = reference or available[0]
    images = {key: load_volume(inputs[key], key) for key in available}
    if mask is not None:
        extractor = mask_extractor(load_volume(mask, "brain mask"), reference_key)
    else:
        extractor = load_brain_extractor(options.brain_extractor, "t1" if "t1" in images else reference_key)
    prepared = prepare_inputs(images, reference_key, extractor, options.spacing_mm, step=options.on_step, cancel=cancel)
    if options.on_step is not None:
        options.on_step("imputing")
    results = impute_all(prepared.images, missing, model, reference=reference_key, mask=prepared.mask, cancel=cancel, **impute_options)
    study = prepare_study(prepared.on_reference, model.contrasts, reference=reference_key, mask=prepared.reference_mask)
    study.notes[:] = [*prepared.notes, *next(iter(results.values())).notes]
    mapped = {key: Imputation(to_reference(result.image, prepared), key, study,
                              None if result.uncertainty is None else to_reference(result.uncertainty, prepared),
                              result.uncertainty_meaning, result.method)
              for key, result in results.items()}
    if options.keep_intermediate is not None:
        write_intermediate(options.keep_intermediate, prepared, {key: result.image for key, result in results.items()})
        study.notes.append(f"each step's output was written to '{options.keep_intermediate}'")
    return mapped
