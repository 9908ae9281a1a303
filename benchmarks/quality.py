"""Imputation quality of a model against simple baselines on subjects it never saw (issues 3 and 18).

For each held-out subject (default: the model card's validation subjects) and each contrast missing in
turn, the contrast is imputed by:

- CollaGAN: the model as shipped (the default path: three slice orientations, bf16 where the CPU computes it
  natively), with its card's smoothing (synthesis.smooth_in_brain) and landmark offsets (intensity_landmarks.py);
  the same output without the offsets and unsmoothed are further rows where the card has them (free: both are
  applied after the network), the axial pass alone (`--axial`, a third of the network's cost) and 8 averaged views
  (`--views8`, 8 times the default's) opt-in rows, each by the model that serves the request;
- mean of inputs; per-voxel linear and quadratic regressions and a random forest on small patches, fitted
  on brain voxels of the card's training subjects (never on a held-out one);
- a single input: by default the model under test given one input only (its card's `missing_inputs` must
  allow N-1 absent contrasts, as an any-subset model's does), or with --single-input-weights a separate
  generator trained with one input. Either way each contrast gets the one input that scored best on the
  training subjects, chosen there and never on a held-out subject; the table says which model and input.

Scores (metrics.py, BraSyn normalisation): SSIM, PSNR and NMSE over the brain, SSIM over the whole volume,
and SSIM, PSNR and NMSE inside BraTS tumour regions (regions.py: whole tumour, tumour core, enhancing
tumour) from the subject's real label map (the data manifest's "labels", put on the prepared study's grid
by the importance analysis's own helper), so the paper's T1Gd finding is shown with true labels. Every
subject is also scored in the enhancement proxy (regions.py), which is reported for the subjects without
a label map and named a proxy wherever it appears: it holds vessels and choroid plexus, and in a brain
without a tumour it holds nothing else. Slice consistency: mean |difference| between neighbouring axial
slices of the imputed volume, as a ratio to the real volume's. `--n4` adds brain scores against the real
volume freed of its coil shading (bias_field.py), which no imputation from other contrasts reproduces.

Cost, 2 CPU cores: the training subjects are read once each, streamed (a fixed total of sampled voxels
shared among them, so fitting stays about a minute per contrast whatever their number, and 8 slices each
to choose the single input); the held-out part is two network passes per subject and contrast.

Writes quality.json (every figure printed, per-subject rows and means), quality.md and quality.png (the
first held-out subject, per contrast: the single input chosen for it, the CollaGAN imputation, the real
volume and |difference|).

    python benchmarks/quality.py --data ../shared/data/training.json [--weights RUN/MODEL.safetensors] [--write-card]

`--write-card` writes the shipped CollaGAN row's means into the model card (`metrics.held_out`), which the panel and
README quote.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.analysis.evaluation import METRIC_NAMES
from CollaGANImputeLib.analysis.importance import _label_array
from CollaGANImputeLib.analysis.importance_report import REGION_METRICS
from CollaGANImputeLib.cli.importance import label_files
from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.metrics import NORMALISATION, brasyn_normalise, image_metrics, region_metrics
from CollaGANImputeLib.core.orientations import DEFAULT_PLANES
from CollaGANImputeLib.inference.error_model import local_contrast
from CollaGANImputeLib.inference.intensity_landmarks import model_landmarks
from CollaGANImputeLib.inference.synthesis import ServedInputs, model_inputs, model_smoothing, precision_of, smooth_in_brain, synthesise
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.io.montage import montage_image, write_png
from CollaGANImputeLib.model.model_card import update_card
from CollaGANImputeLib.model.weights import Model, load_model
from CollaGANImputeLib.preparation.bias_field import METHOD as BIAS_METHOD
from CollaGANImputeLib.preparation.bias_field import n4_bias_field, remove_field
from CollaGANImputeLib.preparation.data import Subject, discover_subjects, only_subjects, prepare_subject
from CollaGANImputeLib.preparation.regions import PROXY_REGION, REGION_NAMES, REGIONS, proxy_regions, regions_from_labels
from CollaGANImputeLib.preparation.study import PreparedStudy

# Voxels sampled over ALL training subjects together (divided evenly among them), so the fitting cost does
# not grow with their number: the regressions' total is what 3 subjects x 400,000 gave before, the forest's
# what 3 x 60,000 gave (about a minute per contrast on 2 cores).
REGRESSION_VOXELS = 1_200_000
FOREST_VOXELS = 180_000
FOREST = {"n_estimators": 50, "max_depth": 14, "min_samples_leaf": 5, "max_features": 0.5}  # fixed before any held-out figure
# Slices per training subject to choose the single input: one batch of the network (synthesise's default size),
# which on 2 cores costs about as much as 4 slices (a batch's cost hardly depends on its size there).
CHOICE_SLICES = 8
QUICK_DIVISOR = 10  # --quick: a smoke run's voxel samples; its figures are not evidence
COLLAGAN, UNSMOOTHED, VIEWS8, SINGLE = "CollaGAN", "CollaGAN, no smoothing", "CollaGAN, 8 views", "single input"
AXIAL = "CollaGAN, axial only"
OWN_INTENSITIES = "CollaGAN, no landmark offsets"
MEAN, LINEAR, QUADRATIC, FOREST_NAME = "mean of inputs", "linear regression", "quadratic regression", "patch random forest"
CARD_METRICS = ("ssim_brain", "psnr_brain", "nmse_brain", "ssim_volume", "slice_roughness_ratio")


def per_subject(total: int, subjects: int) -> int:
    return max(total // max(subjects, 1), 1)


def features(inputs: list[np.ndarray], quadratic: bool) -> np.ndarray:
    """Columns: 1, each input, and with `quadratic` every product of two inputs (squares included)."""
    columns = [np.ones_like(inputs[0]), *inputs]
    if quadratic:
        columns += [a * b for a, b in itertools.combinations_with_replacement(inputs, 2)]
    return np.stack(columns, axis=1)


def patch_features(volume: np.ndarray, where) -> np.ndarray:
    """(voxels, 6) for one contrast at `where` (a boolean mask or index arrays): the voxel, the mean and
    standard deviation over 3x3 and 7x7 in-plane windows, and the mean over a 3x3x3 block."""
    columns = [volume[where]]
    for width in (3, 7):
        columns += [ndimage.uniform_filter(volume, (1, width, width))[where], local_contrast(volume, width)[where]]
    columns.append(ndimage.uniform_filter(volume, 3)[where])
    return np.stack(columns, axis=1).astype(np.float32)


class TrainingSample:
    """Brain voxels of one training subject drawn at random, with every contrast's value there (for the
    regressions) and the patch features of the first `forest` of them (a random subset, for the forest).
    Kept instead of the study, so the training subjects are streamed and only samples stay in memory."""

    def __init__(self, study: PreparedStudy, contrasts: Sequence[str], regression: int, forest: int, rng: np.random.Generator) -> None:
        brain = np.flatnonzero(study.mask)
        chosen = rng.choice(brain, size=min(max(regression, forest), brain.size), replace=False)
        self.values = {k: study.images[k].ravel()[chosen] for k in contrasts}
        where = np.unravel_index(chosen[:forest], study.mask.shape)
        self.patches = {k: patch_features(study.images[k], where) for k in contrasts}
        self.regression_voxels, self.forest_voxels = int(chosen.size), int(min(forest, chosen.size))


class RegressionBaseline:
    """Per-voxel least squares from the available contrasts to the missing one (a REPLICA-like baseline)."""

    def __init__(self, samples: list[TrainingSample], contrasts: list[str], target: str, quadratic: bool) -> None:
        self.inputs = [k for k in contrasts if k != target]
        self.quadratic = quadratic
        rows = [features([s.values[k] for k in self.inputs], quadratic) for s in samples]
        self.weights, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate([s.values[target] for s in samples]), rcond=None)

    def predict(self, study: PreparedStudy) -> np.ndarray:
        brain = study.mask
        out = np.zeros(brain.shape, dtype=np.float32)
        out[brain] = features([study.images[k][brain] for k in self.inputs], self.quadratic) @ self.weights
        return np.clip(out, 0, None)


class PatchForestBaseline:
    """A random forest from small patches of the available contrasts (patch_features of each) to the
    missing voxel (issue 3's optional baseline). Needs scikit-learn (the bench extra)."""

    def __init__(self, samples: list[TrainingSample], contrasts: list[str], target: str, seed: int = 0) -> None:
        from sklearn.ensemble import RandomForestRegressor

        self.inputs = [k for k in contrasts if k != target]
        rows = np.concatenate([np.hstack([s.patches[k] for k in self.inputs]) for s in samples])
        values = np.concatenate([s.values[target][: s.forest_voxels] for s in samples])
        self.forest = RandomForestRegressor(**FOREST, n_jobs=-1, random_state=seed).fit(rows, values)

    def predict(self, study: PreparedStudy) -> np.ndarray:
        out = np.zeros(study.mask.shape, dtype=np.float32)
        out[study.mask] = self.forest.predict(np.hstack([patch_features(study.images[k], study.mask) for k in self.inputs]))
        return out


def choice_slices(mask: np.ndarray, count: int) -> np.ndarray:
    """`count` evenly spaced axial slices among those with at least a tenth of the largest slice's brain."""
    area = mask.reshape(mask.shape[0], -1).sum(axis=1)
    candidates = np.nonzero(area >= 0.1 * area.max())[0]
    return np.unique(candidates[np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round().astype(int)])


class SingleInputBaseline:
    """One input contrast only: the model under test with every input but one zero-filled (an any-subset
    model was trained for that), or a generator trained that way (card missing_inputs min = max = N-1).

    For each contrast it is given the one input with the best mean 2-D brain SSIM over CHOICE_SLICES evenly
    spaced slices of every training subject (imputed without the smoothing across slices, which
    needs neighbouring slices; with the in-plane one), chosen there and never on a held-out subject. Held-out
    imputations are whole volumes with the smoothing of the model under test."""

    def __init__(self, model: Model, under_test: Model, external: bool) -> None:
        if model.most_missing < len(model.contrasts) - 1:
            raise SystemExit(f"model '{model.name}' imputes with at most {model.most_missing} contrast(s) absent (card "
                             f"missing_inputs), not from a single input; give --single-input-weights")
        if model.contrasts != under_test.contrasts:
            raise SystemExit(f"--single-input-weights: contrasts {model.contrasts}, not {under_test.contrasts}")
        self.model, self.under_test, self.external = model, under_test, external
        self.contrasts = model.contrasts
        self.training_ssim: dict[str, dict[str, list[float]]] = {}
        self.chosen: dict[str, str] = {}

    @property
    def label(self) -> str:
        return f"{SINGLE} ({'separate model ' + self.model.name if self.external else 'this model, one input'})"

    def stack(self, study: PreparedStudy, under_test_stack: np.ndarray) -> np.ndarray:
        return under_test_stack if self.model is self.under_test else model_inputs(self.model, study)

    def predict(self, stack: np.ndarray, key: str, source: str, mask: np.ndarray, smoothing: tuple[float, float],
                planes: int = DEFAULT_PLANES) -> np.ndarray:
        """`key` imputed from `source` alone, by default as the product imputes (every slice orientation)."""
        alone = stack.copy()
        alone[[i for i, k in enumerate(self.contrasts) if k != source]] = 0.0
        return synthesise(self.model.generator, alone, self.contrasts.index(key), mask, smoothing=smoothing, planes=planes)

    def score_training_subject(self, study: PreparedStudy, stack: np.ndarray, targets: Sequence[str], slices: int) -> None:
        chosen = choice_slices(study.mask, slices)
        sparse = np.zeros_like(study.mask)
        sparse[chosen] = study.mask[chosen]
        mask = study.mask[chosen]
        for key in targets:
            in_plane = (0.0, self.under_test.smoothing(key)[1])  # slice by slice: only the chosen slices need it
            for source in self.contrasts:
                if source != key:
                    fake = self.predict(stack, key, source, sparse, (0.0, 0.0), planes=1)[chosen]  # a few axial slices
                    fake = smooth_in_brain(fake, mask, in_plane) if in_plane[1] else fake
                    score = image_metrics(study.images[key][chosen], fake, mask, slices_2d=True)["ssim_brain"]
                    self.training_ssim.setdefault(key, {}).setdefault(source, []).append(score)

    def choose(self) -> None:
        for key, by_source in self.training_ssim.items():
            self.chosen[key] = max(by_source, key=lambda source: np.mean(by_source[source]))


class HeldOut:
    """A held-out study with the model's inputs and its network output per contrast, so that one network
    pass serves both the smoothed and the unsmoothed row (the smoothing is applied after the network)."""

    def __init__(self, name: str, study: PreparedStudy, model: Model) -> None:
        self.name, self.study, self.model = name, study, model
        self.inputs = ServedInputs(study)
        self.stack = self.inputs(model)
        self.passes: dict[str, tuple[np.ndarray, float]] = {}

    def server(self, key: str) -> Model:
        """The model that imputes `key` from the other contrasts: the card's companion where it serves `key`."""
        return self.model.serving([key], [k for k in self.model.contrasts if k != key])

    def network(self, key: str) -> tuple[np.ndarray, float]:
        """The unsmoothed imputation of `key` and the seconds its network pass took."""
        if key not in self.passes:
            server = self.server(key)
            began = time.monotonic()
            fake = synthesise(server.generator, self.inputs(server), self.model.contrasts.index(key), self.study.mask)
            self.passes[key] = fake, time.monotonic() - began
        return self.passes[key]

    def smoothing(self, key: str) -> tuple[float, float]:
        """The serving model's smoothing of `key` in voxels of this study."""
        return model_smoothing(self.server(key), key, self.study.slice_spacing)


def slice_roughness(volume: np.ndarray, brain: np.ndarray) -> float:
    """Mean |v[k+1] - v[k]| over voxels in the brain in both slices, after BraSyn normalisation."""
    scaled = brasyn_normalise(volume, brain)
    both = brain[1:] & brain[:-1]
    return float(np.abs(scaled[1:] - scaled[:-1])[both].mean())


def held_out_regions(study: PreparedStudy, name: str, labels: Path | None) -> tuple[dict[str, np.ndarray], dict]:
    """The regions a held-out subject is scored in: wt, tc, et from its label map on the study grid (when it
    has one) and always the enhancement proxy; with how they were defined and the label values found."""
    proxy = proxy_regions(study.images["t1gd"], study.images["t1"], study.mask)
    masks, info = dict(proxy.masks), {"proxy": proxy.definition, "labels": None}
    if labels is not None:
        where = f"of subject '{name}' ({labels})"
        array, notes = _label_array(labels, study, where)
        tumour = regions_from_labels(array, where)
        masks.update(tumour.masks)
        values, counts = np.unique(np.round(array).astype(np.int16), return_counts=True)
        if not tumour.masks["et"].any():  # an LGG may have none, but so does a map numbered otherwise (BRATS 2012's)
            notes = [*notes, f"label map {where}: no enhancing-tumour voxel under {tumour.definition}; check its numbering"]
        info["labels"] = {"file": str(labels), "definition": tumour.definition, "notes": notes,
                          "label_voxels": {str(v): int(c) for v, c in zip(values, counts)},
                          "region_voxels_in_brain": {r: int((tumour.masks[r] & study.mask).sum()) for r in REGIONS}}
    return masks, info


def figure_slice(study: PreparedStudy, regions: dict[str, np.ndarray]) -> int:
    """The slice with most enhancing tumour (label map) or else most enhancement proxy, among those with at
    least 80 % of the largest brain area (low slices full of enhancing venous sinuses would win otherwise)."""
    region = regions["et"] if "et" in regions and regions["et"].any() else regions[PROXY_REGION]
    area = study.mask.reshape(study.mask.shape[0], -1).sum(axis=1)
    enhancing = region.reshape(region.shape[0], -1).sum(axis=1)
    return int(np.argmax(np.where(area >= 0.8 * area.max(), enhancing, -1)))


def evaluate_subject(subject: HeldOut, targets: Sequence[str], methods: dict[str, Callable], regions: dict[str, np.ndarray],
                     n4: bool) -> tuple[list[dict], dict, dict]:
    """Every method's imputation of every target, scored; the imputations by (contrast, method) and, with
    `n4`, each real volume's shading range (95th / 5th percentile of its N4 field in the brain). A method
    returns its imputation and extra fields for its row ("seconds" replaces the measured time)."""
    study, name = subject.study, subject.name
    rows, fakes, shading = [], {}, {}
    for key in targets:
        real = study.images[key]
        real_roughness = slice_roughness(real, study.mask)
        if n4:
            field = n4_bias_field(real, study.mask, study.canonical_spacing)
            unshaded = remove_field(real, field, study.mask)
            low, high = np.percentile(field[study.mask], [5, 95])
            shading[key] = round(float(high / low), 3)
        for method, impute in methods.items():
            started = time.monotonic()
            fake, extra = impute(subject, key)
            seconds = extra.pop("seconds", time.monotonic() - started)
            scores = region_metrics(real, fake, study.mask, regions)
            row = {"subject": name, "contrast": key, "method": method, "seconds": round(seconds, 2),
                   **{m: scores[m] for m in METRIC_NAMES}, "regions": scores["regions"],
                   "slice_roughness_ratio": slice_roughness(fake, study.mask) / real_roughness, **extra}
            if n4:
                against = image_metrics(unshaded, fake, study.mask)
                row["bias_corrected"] = {m: against[m] for m in REGION_METRICS}
            rows.append(row)
            fakes[(key, method)] = fake
        print(f"  {name} {display_name(key)}: " + ", ".join(f"{r['method']} {r['ssim_brain']:.3f}" for r in rows if r["contrast"] == key),
              file=sys.stderr)
    return rows, fakes, shading


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def region_mean(rows: list[dict], region: str) -> dict | None:
    """Mean region figures over the rows whose subject has voxels in `region`, with how many subjects."""
    scored = [r["regions"][region] for r in rows if r["regions"].get(region)]
    if not scored:
        return None
    return {"subjects": len(scored), **{m: float(np.mean([s[m] for s in scored])) for m in REGION_METRICS}}


def means(rows: list[dict], targets: Sequence[str], methods: Sequence[str], labelled: set[str]) -> dict:
    """Per contrast and method: brain figures over every held-out subject; tumour regions over the labelled
    subjects; the enhancement proxy over the unlabelled ones (where the proxy is what there is)."""
    out = {}
    for key in targets:
        out[key] = {}
        for method in methods:
            chosen = [r for r in rows if r["contrast"] == key and r["method"] == method]
            entry = {"subjects": len(chosen), **{m: float(np.mean([r[m] for r in chosen])) for m in METRIC_NAMES},
                     "slice_roughness_ratio": float(np.mean([r["slice_roughness_ratio"] for r in chosen]))}
            entry["regions"] = {r: region_mean([c for c in chosen if c["subject"] in labelled], r) for r in REGIONS}
            entry["regions"][PROXY_REGION] = region_mean([c for c in chosen if c["subject"] not in labelled], PROXY_REGION)
            if "bias_corrected" in chosen[0]:
                entry["bias_corrected"] = {m: float(np.mean([r["bias_corrected"][m] for r in chosen])) for m in REGION_METRICS}
            out[key][method] = entry
    return out


def _pair(entry: dict | None) -> str:
    return "-" if entry is None else f"{entry['ssim_brain']:.3f} / {entry['psnr_brain']:.2f}"


def main_table(mean: dict, targets: Sequence[str], methods: Sequence[str]) -> str:
    """Rows: methods; columns: the contrast imputed; cells: mean brain SSIM / PSNR (dB) over held-out subjects."""
    lines = ["| method | " + " | ".join(f"{display_name(k)} SSIM / PSNR" for k in targets) + " |", "|---|" + "---|" * len(targets)]
    lines += [f"| {method} | " + " | ".join(_pair(mean[k][method]) for k in targets) + " |" for method in methods]
    return "\n".join(lines) + "\n"


def region_table(mean: dict, targets: Sequence[str], methods: Sequence[str]) -> str:
    """Inside the label maps' regions: T1Gd first (the paper's finding), then every other contrast."""
    order = [k for k in targets if k == "t1gd"] + [k for k in targets if k != "t1gd"]
    lines = ["| contrast | method | " + " | ".join(f"{REGION_NAMES[r]} SSIM / PSNR" for r in REGIONS) + " | brain SSIM / PSNR |",
             "|---|---|" + "---|" * (len(REGIONS) + 1)]
    for key in order:
        for method in methods:
            entry = mean[key][method]
            lines.append(f"| {display_name(key)} | {method} | " + " | ".join(_pair(entry["regions"][r]) for r in REGIONS)
                         + f" | {_pair(entry)} |")
    return "\n".join(lines) + "\n"


def full_table(mean: dict, targets: Sequence[str], methods: Sequence[str]) -> str:
    lines = ["| contrast | method | SSIM brain | PSNR brain (dB) | NMSE brain | SSIM volume | enhancement PROXY SSIM / PSNR "
             "(unlabelled subjects) | slice diff. ratio |", "|---|---|---|---|---|---|---|---|"]
    for key in targets:
        for method in methods:
            e = mean[key][method]
            lines.append(f"| {display_name(key)} | {method} | {e['ssim_brain']:.3f} | {e['psnr_brain']:.2f} | {e['nmse_brain']:.3f} | "
                         f"{e['ssim_volume']:.3f} | {_pair(e['regions'][PROXY_REGION])} | {e['slice_roughness_ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def subject_table(rows: list[dict], held_out: Sequence[str], targets: Sequence[str], methods: Sequence[str]) -> str:
    """Per subject and contrast, every method's brain SSIM / PSNR."""
    lines = ["| subject | contrast | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for name in held_out:
        for key in targets:
            by_method = {r["method"]: r for r in rows if r["subject"] == name and r["contrast"] == key}
            lines.append(f"| {name} | {display_name(key)} | " + " | ".join(_pair(by_method[m]) for m in methods) + " |")
    return "\n".join(lines) + "\n"


def bias_corrected_table(mean: dict, targets: Sequence[str], methods: Sequence[str]) -> str:
    """Brain SSIM and PSNR against the real volume as acquired and after N4, side by side."""
    lines = ["| contrast | method | SSIM brain | SSIM brain, N4 real | PSNR brain (dB) | PSNR brain, N4 real (dB) |", "|---|---|---|---|---|---|"]
    for key in targets:
        for method in methods:
            e = mean[key][method]
            lines.append(f"| {display_name(key)} | {method} | {e['ssim_brain']:.3f} | {e['bias_corrected']['ssim_brain']:.3f} | "
                         f"{e['psnr_brain']:.2f} | {e['bias_corrected']['psnr_brain']:.2f} |")
    return "\n".join(lines) + "\n"


def split_subjects(args: argparse.Namespace, model: Model, parser: argparse.ArgumentParser) -> tuple[list[str], list[str], dict[str, Subject]]:
    """Held-out subjects (default: the card's validation subjects) and the subjects the baselines fit on
    (the card's training subjects; every other subject when the card does not list them)."""
    training = model.card.get("training", {})
    held_out = args.held_out or training.get("validation_subjects", [])
    if not held_out:
        parser.error(f"model '{model.name}' lists no validation subjects in its card; name --held-out")
    subjects = {s.name: s for s in discover_subjects(args.data, model.contrasts)}
    only_subjects(list(subjects.values()), held_out, args.data)  # a mistyped name stops here, before any baseline is fitted
    seen = sorted(set(held_out) & set(training.get("train_subjects", [])))
    if seen:
        parser.error(f"--held-out {', '.join(seen)}: the model was trained on it, so it is not held out")
    trained_on = [n for n in training.get("train_subjects", subjects) if n not in held_out]
    absent = [n for n in trained_on if n not in subjects]
    if absent:
        parser.error(f"the card's training subjects {', '.join(absent)} are not complete subjects of {args.data}")
    return held_out, trained_on, subjects


def held_out_metrics(mean: dict, held_out: Sequence[str], smoothed: bool, moved: bool, precision: str, method: str = COLLAGAN) -> dict:
    """The card's `metrics.held_out`: the shipped CollaGAN row's means (whole volumes as the module imputes
    them), so the panel and the README quote what this benchmark measured, not a copy made by hand. With
    `method` another CollaGAN row (the axial path's `metrics.held_out_axial`)."""
    settings = (["smoothing"] * smoothed + ["landmark offsets"] * moved
                + [f"{'the axial slices alone' if method == AXIAL else 'three slice orientations'} in {precision}"])
    block = {"subjects": list(held_out),
             "source": "benchmarks/quality.py (whole volumes, as imputed with this card's inference settings"
                       + (f" and {' and '.join(settings)})" if settings else ")")}
    for key, by_method in mean.items():
        block[key] = {name: round(float(by_method[method][name]), 4) for name in CARD_METRICS}
    return block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="manifest (training.json): held-out and training subjects, label maps")
    parser.add_argument("--weights", type=Path, help="the model under test (default: the bundled model)")
    parser.add_argument("--held-out", action="append", default=[], help="default: the model card's validation subjects")
    parser.add_argument("--missing", action="append", default=[], help="contrasts to impute (default: each in turn)")
    parser.add_argument("--single-input-weights", type=Path,
                        help="a generator trained with a single input (default: the model under test given one input)")
    parser.add_argument("--views8", action="store_true", help="also average 8 shifted and mirrored views (8x the network's cost)")
    parser.add_argument("--axial", action="store_true", help="also the axial pass alone, not averaged with the coronal and sagittal ones")
    parser.add_argument("--n4", action="store_true", help="also score against the real volumes after N4 (about 5-15 s per volume)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: voxel samples / {QUICK_DIVISOR}; not evidence")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--write-card", action="store_true",
                        help="write the shipped CollaGAN row's means into the model card (metrics.held_out)")
    args = parser.parse_args(argv)
    if args.write_card and (args.quick or args.missing or args.held_out):
        parser.error("--write-card records the card's own validation subjects, every contrast, full sampling: "
                     "drop --quick, --missing and --held-out")
    started = time.monotonic()
    timing = {}

    model = load_model(args.weights)
    precision = precision_of(model.generator)  # as this machine imputes
    contrasts = model.contrasts
    targets = args.missing or contrasts
    unknown = [k for k in targets if k not in contrasts]
    if unknown or not {"t1", "t1gd"} <= set(contrasts):
        parser.error(f"--missing {unknown}: the model imputes {contrasts}" if unknown else "the enhancement proxy needs T1 and T1Gd")
    held_out, trained_on, subjects = split_subjects(args, model, parser)
    divisor = QUICK_DIVISOR if args.quick else 1
    sampling = {"regression_voxels_total": REGRESSION_VOXELS // divisor, "forest_voxels_total": FOREST_VOXELS // divisor,
                "regression_voxels_per_subject": per_subject(REGRESSION_VOXELS // divisor, len(trained_on)),
                "forest_voxels_per_subject": per_subject(FOREST_VOXELS // divisor, len(trained_on)),
                "forest": FOREST, "seed": 0, "choice_slices_per_subject": CHOICE_SLICES}
    external = args.single_input_weights is not None
    single = SingleInputBaseline(load_model(args.single_input_weights) if external else model, model, external)
    if external:
        seen = sorted(set(held_out) & set(single.model.card.get("training", {}).get("train_subjects", [])))
        if seen:
            parser.error(f"--single-input-weights was trained on {', '.join(seen)}, which is held out here")
    print(f"held out: {', '.join(held_out)}; baselines fitted and the single input chosen on {len(trained_on)} subject(s): "
          f"{', '.join(trained_on)}", file=sys.stderr)

    # Training subjects, one at a time: voxel samples for the baselines and the single input's trial imputations.
    rng = np.random.default_rng(sampling["seed"])
    samples = []
    for number, name in enumerate(trained_on, 1):
        study = prepare_subject(subjects[name], contrasts)
        samples.append(TrainingSample(study, contrasts, sampling["regression_voxels_per_subject"], sampling["forest_voxels_per_subject"], rng))
        single.score_training_subject(study, model_inputs(single.model, study), targets, sampling["choice_slices_per_subject"])
        print(f"training subject {number}/{len(trained_on)} {name} read ({time.monotonic() - started:.0f} s)", file=sys.stderr)
        del study
    single.choose()
    sampling["regression_voxels_used"] = sum(s.regression_voxels for s in samples)
    sampling["forest_voxels_used"] = sum(s.forest_voxels for s in samples)
    timing["training_subjects_s"] = round(time.monotonic() - started, 1)

    fit_started = time.monotonic()
    regressions = {(key, quadratic): RegressionBaseline(samples, contrasts, key, quadratic) for key in targets for quadratic in (False, True)}
    forests = {}
    for key in targets:
        forests[key] = PatchForestBaseline(samples, contrasts, key)
        print(f"forest for {display_name(key)} fitted ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    del samples
    timing["fitting_s"] = round(time.monotonic() - fit_started, 1)

    # Held-out subjects. Each method: (HeldOut, contrast) -> (imputation, extra fields of its row).
    smoothed = any(any(model.smoothing(key)) for key in targets)  # without a card smoothing the unsmoothed row is the same
    moved = bool(model.card.get("intensity_landmarks", {}).get("offsets"))  # likewise the row without the card's offsets

    def with_smoothing(s: HeldOut, key: str) -> np.ndarray:
        return smooth_in_brain(s.network(key)[0], s.study.mask, s.smoothing(key)) if any(s.smoothing(key)) else s.network(key)[0]

    methods: dict[str, Callable] = {COLLAGAN: lambda s, key: (model_landmarks(s.server(key), key, with_smoothing(s, key), s.study.mask), {})}
    if moved:
        methods[OWN_INTENSITIES] = lambda s, key: (with_smoothing(s, key), {})
    if smoothed:
        methods[UNSMOOTHED] = lambda s, key: (s.network(key)[0], {"seconds": s.network(key)[1]})  # CollaGAN's own pass
    if args.views8:  # what `impute --views 8` delivers: by the serving model, with its smoothing and mapping
        methods[VIEWS8] = lambda s, key: (s.inputs.impute(model, key, views=8)[1], {})
    if args.axial:
        methods[AXIAL] = lambda s, key: (s.inputs.impute(model, key, planes=1)[1], {})
    methods[MEAN] = lambda s, key: (np.mean([s.study.images[k] for k in contrasts if k != key], axis=0), {})
    methods[LINEAR] = lambda s, key: (regressions[(key, False)].predict(s.study), {})
    methods[QUADRATIC] = lambda s, key: (regressions[(key, True)].predict(s.study), {})
    methods[FOREST_NAME] = lambda s, key: (forests[key].predict(s.study), {})
    methods[single.label] = lambda s, key: (
        single.predict(single.stack(s.study, s.stack), key, single.chosen[key], s.study.mask, s.smoothing(key)), {"single_input": single.chosen[key]})

    held_started = time.monotonic()
    labels = label_files(args.data, held_out, None) or {}
    rows, figure_rows, shading, region_info = [], [], {}, {}
    for number, name in enumerate(held_out):
        subject = HeldOut(name, prepare_subject(subjects[name], contrasts), model)
        study = subject.study
        regions, region_info[name] = held_out_regions(study, name, labels.get(name))
        subject_rows, fakes, shading[name] = evaluate_subject(subject, targets, methods, regions, args.n4)
        rows += subject_rows
        if number == 0:
            index = figure_slice(study, regions)
            for key in targets:
                source, fake = single.chosen[key], fakes[(key, COLLAGAN)]
                panels = [(f"{display_name(source)} (input)", study.images[source]), (f"{display_name(key)} CollaGAN", fake),
                          (f"{display_name(key)} real", study.images[key]), ("|CollaGAN - real|", np.abs(fake - study.images[key]))]
                figure_rows.append(montage_image(panels, study.mask, shared_window=(2, 1), index=index))
        print(f"held-out subject {name} done ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    timing["held_out_s"] = round(time.monotonic() - held_started, 1)
    timing["total_s"] = round(time.monotonic() - started, 1)

    labelled = sorted(n for n in held_out if region_info[n]["labels"] is not None)
    unlabelled = [n for n in held_out if n not in labelled]
    mean = means(rows, targets, list(methods), set(labelled))
    chosen = ", ".join(f"{display_name(k)} from {display_name(s)}" for k, s in single.chosen.items())
    report = {
        "model": model.name, "weights": str(model.weights_path), "weights_sha256": model.card["sha256"],
        "companion": None if model.companion is None else {"name": model.companion.name, "sha256": model.companion.card["sha256"],
                                                            "contrasts": model.card["companion"]["contrasts"]},
        "data": str(args.data), "precision": precision,
        "quick": args.quick, "held_out": held_out, "contrasts_imputed": list(targets),
        "baselines_fitted_on": trained_on, "sampling": sampling,
        "normalisation": NORMALISATION,
        "ssim": "3-D SSIM (7-voxel window) averaged over the brain (ssim_brain), the whole volume (ssim_volume) or a region",
        "regions": {"definition": "figures under 'regions' are ssim_brain, psnr_brain and nmse_brain computed over the region's "
                                  "brain voxels instead of the whole brain (importance.py's REGION_METRICS)",
                    "labelled_subjects": labelled, "proxy_subjects": unlabelled, "by_subject": region_info,
                    "means": "tumour regions (wt, tc, et) over the labelled subjects; the enhancement PROXY over the unlabelled ones"},
        "slice_roughness_ratio": "mean |neighbouring-slice difference| of the imputed volume / the same of the real volume",
        "smoothing": {"by_contrast": {key: dict(zip(("through_plane_sigma_mm", "in_plane_sigma_voxels"), model.smoothing(key)))
                                      for key in targets},
                      "applies_to": [COLLAGAN, VIEWS8, AXIAL, single.label]},
        "intensity_landmarks": {"offsets_for": sorted(model.card.get("intensity_landmarks", {}).get("offsets", {})),
                                "applies_to": [COLLAGAN, VIEWS8, AXIAL]},
        "single_input": {
            "method": single.label, "external": external, "name": single.model.name, "sha256": single.model.card["sha256"],
            "commands": single.model.card.get("training", {}).get("commands", []),
            "choice": f"per contrast, the single input with the best mean 2-D brain SSIM over {sampling['choice_slices_per_subject']} "
                      "evenly spaced slices of each training subject (no smoothing across slices, the model's in-plane smoothing)",
            "chosen": single.chosen,
            "training_ssim_brain": {k: {s: float(np.mean(v)) for s, v in by.items()} for k, by in single.training_ssim.items()}},
        "bias_corrected": f"brain metrics against the real volume after {BIAS_METHOD}" if args.n4 else None,
        "shading_range": shading if args.n4 else None,  # 95th over 5th percentile of the N4 field in the brain
        "seconds": timing,
        "row_seconds": f"each row's imputation time; {COLLAGAN}'s includes the network pass, which the unsmoothed row shares and reports",
        "mean": mean, "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "quality.json", json.dumps(report, indent=2) + "\n")
    methods_list = list(methods)
    companion = model.companion
    companion_text = (f", with its companion {companion.name} (sha256 {companion.card['sha256'][:12]}) imputing "
                      f"{', '.join(display_name(k) for k in model.card['companion']['contrasts'])} from the other contrasts"
                      if companion is not None else "")
    text = (("**QUICK smoke run (--quick): voxel samples cut; not evidence.**\n\n" if args.quick else "")
            + f"Model {model.name} (sha256 {model.card['sha256'][:12]}){companion_text}. "
            f"The network in {precision}, as it runs on this machine. Held-out subject(s): {', '.join(held_out)}. Baselines fitted, "
            f"and the single input chosen, on the model's {len(trained_on)} training subject(s). {NORMALISATION}.\n\n"
            f"{single.label}: {chosen} (chosen on the training subjects).\n\n"
            f"Mean brain SSIM / PSNR (dB) over the {len(held_out)} held-out subject(s):\n\n" + main_table(mean, targets, methods_list))
    if labelled:
        voxels = "; ".join(f"{n}: " + ", ".join(f"{r} {v}" for r, v in region_info[n]["labels"]["region_voxels_in_brain"].items())
                           for n in labelled)
        text += (f"\nInside the tumour regions of the real label map(s) of {', '.join(labelled)} (voxels in the brain: {voxels}; "
                 f"{region_info[labelled[0]]['labels']['definition']}), SSIM / PSNR (dB):\n\n" + region_table(mean, targets, methods_list))
        text += "".join(f"\nNote: {note}\n" for n in labelled for note in region_info[n]["labels"]["notes"])
    else:
        text += "\nNo held-out subject has a label map: tumour regions are reported only through the enhancement proxy below.\n"
    text += (f"\nEvery figure, means over held-out subjects. The enhancement PROXY (not a tumour label: {region_info[held_out[0]]['proxy']}) "
             f"is averaged over the subjects without a label map ({', '.join(unlabelled) or 'none'}):\n\n" + full_table(mean, targets, methods_list)
             + "\nPer subject, brain SSIM / PSNR (dB):\n\n" + subject_table(rows, held_out, targets, methods_list))
    if args.n4:
        text += (f"\nThe same brain figures against the real volume as acquired and after {BIAS_METHOD}: the coil shading of the "
                 "acquired volume is in no method's output.\n\n" + bias_corrected_table(mean, targets, methods_list))
    write_text_atomic(args.out / "quality.md", text)
    from PIL import Image

    figure = Image.new("L", (max(r.width for r in figure_rows), sum(r.height for r in figure_rows)))
    for i, row in enumerate(figure_rows):
        figure.paste(row, (0, sum(r.height for r in figure_rows[:i])))
    write_png(figure, args.out / "quality.png")
    print(text)
    print(f"wrote {args.out / 'quality.json'}, quality.md, quality.png in {timing['total_s']:.0f} s", file=sys.stderr)
    if args.write_card:
        metrics = {key: value for key, value in model.card.get("metrics", {}).items() if key != "held_out_axial"}  # this run's or none
        metrics["held_out"] = held_out_metrics(mean, held_out, smoothed, moved, precision)
        if args.axial:  # the quick path's own figures, for the panel beside its check box
            metrics["held_out_axial"] = held_out_metrics(mean, held_out, smoothed, moved, precision, AXIAL)
        print(f"wrote metrics.held_out into {update_card(model.weights_path, {'metrics': metrics})}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
