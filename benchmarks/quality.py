"""Imputation quality of a model against simple baselines on subjects it never saw (issue 3's protocol).

For each held-out subject and each contrast in turn: impute it with the model, with the mean of the
other contrasts, with per-voxel linear and quadratic regressions and a random forest on small patches
(PatchForestBaseline) fitted on the training subjects' brain voxels, and (with --single-input-weights)
the same generator trained with a single input contrast (StarGAN-like: every input but one zero-filled),
given for each contrast the one input that did best on the training subjects. Scores (metrics.py: BraSyn normalisation) over the brain,
over the whole volume, and in the enhancement proxy (no tumour labels are available: voxels whose
z-scored T1Gd exceeds z-scored T1 by more than ENHANCEMENT_MARGIN inside the brain; this includes vessels
and choroid plexus besides enhancing tumour). Slice consistency: mean |difference| between neighbouring axial slices of the imputed volume,
as a ratio to the real volume's. "CollaGAN" is the model as shipped, with its card's smoothing across
slices and in plane (inference.smooth_in_brain; the single-input model gets the same); a second row
averages 8 shifted and mirrored views (`--views 8`, opt-in), a third shows it without smoothing. A
second table scores every method against the real volume freed of its coil shading by N4
(bias_field.py), which no imputation from other contrasts can reproduce.

Writes JSON, a Markdown table and a PNG figure (per contrast: inputs' slice, imputed, real, |difference|).

    python benchmarks/quality.py --data ../shared/data/manifest.json --out benchmarks/results
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.atomic import write_text_atomic  # noqa: E402
from CollaGANImputeLib.bias_field import METHOD as BIAS_METHOD  # noqa: E402
from CollaGANImputeLib.bias_field import n4_bias_field, remove_field  # noqa: E402
from CollaGANImputeLib.contrasts import display_name  # noqa: E402
from CollaGANImputeLib.data import discover_subjects, only_subjects, prepare_subject  # noqa: E402
from CollaGANImputeLib.error_model import local_contrast  # noqa: E402
from CollaGANImputeLib.inference import model_inputs, model_smoothing, synthesise  # noqa: E402
from CollaGANImputeLib.metrics import NORMALISATION, brasyn_normalise, image_metrics  # noqa: E402
from CollaGANImputeLib.model_io import Model, load_model  # noqa: E402
from CollaGANImputeLib.montage import montage_image, write_png  # noqa: E402
from CollaGANImputeLib.regions import ENHANCEMENT_MARGIN, enhancement_proxy  # noqa: E402
from CollaGANImputeLib.study import PreparedStudy  # noqa: E402

REGRESSION_VOXELS = 400_000  # brain voxels sampled per training subject to fit the regressions
FOREST_VOXELS = 60_000  # the same for the random forest, which fits about a minute per contrast on 2 cores
METRICS = ("ssim_brain", "psnr_brain", "nmse_brain", "ssim_volume")


def features(inputs: list[np.ndarray], quadratic: bool) -> np.ndarray:
    """Columns: 1, each input, and with `quadratic` every product of two inputs (squares included)."""
    columns = [np.ones_like(inputs[0]), *inputs]
    if quadratic:
        columns += [a * b for a, b in itertools.combinations_with_replacement(inputs, 2)]
    return np.stack(columns, axis=1)


def sample_brain_voxels(study, count: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of up to `count` distinct brain voxels of `study`, drawn at random: what a baseline fits on."""
    voxels = np.flatnonzero(study.mask)
    return rng.choice(voxels, size=min(count, voxels.size), replace=False)


class RegressionBaseline:
    """Per-voxel least squares from the available contrasts to the missing one (a REPLICA-like baseline)."""

    def __init__(self, studies: list, contrasts: list[str], target: str, quadratic: bool, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.inputs = [k for k in contrasts if k != target]
        self.quadratic = quadratic
        rows, values = [], []
        for study in studies:
            chosen = sample_brain_voxels(study, REGRESSION_VOXELS, rng)
            rows.append(features([study.images[k].ravel()[chosen] for k in self.inputs], quadratic))
            values.append(study.images[target].ravel()[chosen])
        self.weights, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate(values), rcond=None)

    def predict(self, study) -> np.ndarray:
        brain = study.mask
        out = np.zeros(brain.shape, dtype=np.float32)
        out[brain] = features([study.images[k][brain] for k in self.inputs], self.quadratic) @ self.weights
        return np.clip(out, 0, None)


class PatchForestBaseline:
    """A random forest from small patches of the available contrasts to the missing voxel (issue 3's optional
    baseline): per input, the voxel, the mean and standard deviation over 3x3 and 7x7 in-plane windows and
    the mean over a 3x3x3 block. Settings fixed before any held-out figure was seen; needs scikit-learn (the
    bench extra)."""

    def __init__(self, studies: list, contrasts: list[str], target: str, seed: int = 0) -> None:
        from sklearn.ensemble import RandomForestRegressor

        rng = np.random.default_rng(seed)
        self.inputs = [k for k in contrasts if k != target]
        rows, values = [], []
        for study in studies:
            chosen = np.zeros(study.mask.size, dtype=bool)
            chosen[sample_brain_voxels(study, FOREST_VOXELS, rng)] = True
            chosen = chosen.reshape(study.mask.shape)
            rows.append(self.features(study, chosen))
            values.append(study.images[target][chosen])
        self.forest = RandomForestRegressor(n_estimators=50, max_depth=14, min_samples_leaf=5, max_features=0.5, n_jobs=-1,
                                            random_state=seed).fit(np.concatenate(rows), np.concatenate(values))

    def features(self, study, where: np.ndarray) -> np.ndarray:
        columns = []
        for key in self.inputs:
            volume = study.images[key]
            columns.append(volume[where])
            for width in (3, 7):
                columns += [ndimage.uniform_filter(volume, (1, width, width))[where], local_contrast(volume, width)[where]]
            columns.append(ndimage.uniform_filter(volume, 3)[where])
        return np.stack(columns, axis=1).astype(np.float32)

    def predict(self, study) -> np.ndarray:
        out = np.zeros(study.mask.shape, dtype=np.float32)
        out[study.mask] = self.forest.predict(self.features(study, study.mask))
        return out


def slice_roughness(volume: np.ndarray, brain: np.ndarray) -> float:
    """Mean |v[k+1] - v[k]| over voxels in the brain in both slices, after BraSyn normalisation."""
    scaled = brasyn_normalise(volume, brain)
    both = brain[1:] & brain[:-1]
    return float(np.abs(scaled[1:] - scaled[:-1])[both].mean())


def figure_slice(study) -> int:
    """The slice with most enhancement among those with at least 80 % of the largest brain area (low slices
    full of enhancing venous sinuses would win otherwise)."""
    area = study.mask.reshape(study.mask.shape[0], -1).sum(axis=1)
    enhancing = enhancement_proxy(study.images["t1gd"], study.images["t1"], study.mask).reshape(study.mask.shape[0], -1).sum(axis=1)
    return int(np.argmax(np.where(area >= 0.8 * area.max(), enhancing, -1)))


class SingleInputBaseline:
    """A generator trained with one input contrast (card missing_inputs min = max = N-1). For each contrast
    it is given the one input with the best mean brain SSIM on the training subjects (`choose_on`), chosen
    there and never on the held-out subject."""

    def __init__(self, model: Model, contrasts: list[str], smoothed_as: Model, choose_on: list[PreparedStudy]) -> None:
        self.model, self.contrasts, self.smoothed_as = model, contrasts, smoothed_as  # the shipped model, for its smoothing
        self.choose_on = choose_on
        self.chosen: dict[str, str] = {}
        self.training_ssim: dict[str, dict[str, float]] = {}

    def predict(self, study: PreparedStudy, key: str, source: str) -> np.ndarray:
        """`key` imputed from `source` alone."""
        stack = model_inputs(self.model, study)
        stack[[i for i, k in enumerate(self.contrasts) if k not in (source, key)]] = 0.0
        return synthesise(self.model.generator, stack, self.contrasts.index(key), study.mask,
                          smoothing=model_smoothing(self.smoothed_as, study))

    def __call__(self, study: PreparedStudy, key: str) -> np.ndarray:
        if key not in self.chosen:
            self.training_ssim[key] = {
                source: float(np.mean([image_metrics(s.images[key], self.predict(s, key, source), s.mask)["ssim_brain"]
                                       for s in self.choose_on]))
                for source in self.contrasts if source != key}
            self.chosen[key] = max(self.training_ssim[key], key=self.training_ssim[key].get)
        return self.predict(study, key, self.chosen[key])


def evaluate_subject(study, name: str, methods: dict, contrasts: list[str]) -> tuple[list[dict], dict, dict]:
    rows, fakes, shading = [], {}, {}
    proxy = enhancement_proxy(study.images["t1gd"], study.images["t1"], study.mask)
    for key in contrasts:
        real = study.images[key]
        real_roughness = slice_roughness(real, study.mask)
        field = n4_bias_field(real, study.mask, study.canonical_spacing)
        unshaded = remove_field(real, field, study.mask)
        low, high = np.percentile(field[study.mask], [5, 95])
        shading[key] = round(float(high / low), 3)
        for method, impute in methods.items():
            started = time.monotonic()
            fake = impute(study, key)
            seconds = time.monotonic() - started
            brain = image_metrics(real, fake, study.mask)
            enhancing = image_metrics(real, fake, study.mask, region=proxy) if proxy.any() else None
            against_unshaded = image_metrics(unshaded, fake, study.mask)
            rows.append({
                "subject": name, "contrast": key, "method": method, "seconds": round(seconds, 2),
                **{m: brain[m] for m in METRICS},
                "enhancing": {m: enhancing[m] for m in ("ssim_brain", "psnr_brain", "nmse_brain")} if enhancing else None,
                "enhancing_voxels": int(proxy.sum()),
                "bias_corrected": {m: against_unshaded[m] for m in ("ssim_brain", "psnr_brain", "nmse_brain")},
                "slice_roughness_ratio": slice_roughness(fake, study.mask) / real_roughness,
            })
            fakes[(key, method)] = fake
    return rows, fakes, shading


def markdown_table(rows: list[dict], contrasts: list[str], methods: list[str]) -> str:
    lines = ["| contrast | method | SSIM brain | PSNR brain (dB) | NMSE brain | SSIM volume | SSIM enh. | PSNR enh. (dB) | slice diff. ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key in contrasts:
        for method in methods:
            chosen = [r for r in rows if r["contrast"] == key and r["method"] == method]
            mean = lambda f: np.mean([f(r) for r in chosen])  # noqa: E731
            enh = [r for r in chosen if r["enhancing"]]
            lines.append(
                f"| {display_name(key)} | {method} | {mean(lambda r: r['ssim_brain']):.3f} | {mean(lambda r: r['psnr_brain']):.2f} | "
                f"{mean(lambda r: r['nmse_brain']):.3f} | {mean(lambda r: r['ssim_volume']):.3f} | "
                + (f"{np.mean([r['enhancing']['ssim_brain'] for r in enh]):.3f} | {np.mean([r['enhancing']['psnr_brain'] for r in enh]):.2f} | "
                   if enh else "- | - | ")
                + f"{mean(lambda r: r['slice_roughness_ratio']):.2f} |")
    return "\n".join(lines) + "\n"


def bias_corrected_table(rows: list[dict], contrasts: list[str], methods: list[str]) -> str:
    """Brain SSIM and PSNR against the real volume as acquired and after N4, side by side."""
    lines = ["| contrast | method | SSIM brain | SSIM brain, N4 real | PSNR brain (dB) | PSNR brain, N4 real (dB) |", "|---|---|---|---|---|---|"]
    for key in contrasts:
        for method in methods:
            chosen = [r for r in rows if r["contrast"] == key and r["method"] == method]
            mean = lambda f: np.mean([f(r) for r in chosen])  # noqa: E731
            lines.append(f"| {display_name(key)} | {method} | {mean(lambda r: r['ssim_brain']):.3f} | "
                         f"{mean(lambda r: r['bias_corrected']['ssim_brain']):.3f} | {mean(lambda r: r['psnr_brain']):.2f} | "
                         f"{mean(lambda r: r['bias_corrected']['psnr_brain']):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="default: the bundled model")
    parser.add_argument("--held-out", action="append", default=[], help="default: the model card's validation subjects")
    parser.add_argument("--single-input-weights", type=Path, help="the generator trained with a single input contrast (baseline)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    model = load_model(args.weights)
    contrasts = model.contrasts
    held_out = args.held_out or model.card["training"]["validation_subjects"]
    everyone = discover_subjects(args.data, contrasts)
    only_subjects(everyone, held_out, args.data)  # a mistyped name stops here, before any baseline is fitted
    subjects = {s.name: s for s in everyone}
    trained_on = [n for n in subjects if n not in held_out]
    seen = sorted(set(held_out) & set(model.card.get("training", {}).get("train_subjects", [])))
    if seen:
        parser.error(f"--held-out {', '.join(seen)}: the model was trained on it, so it is not held out")
    print(f"held out: {', '.join(held_out)}; baselines fitted on {', '.join(trained_on)}", file=sys.stderr)
    studies = {n: prepare_subject(subjects[n], contrasts) for n in subjects}
    regressions = {
        (key, quadratic): RegressionBaseline([studies[n] for n in trained_on], contrasts, key, quadratic)
        for key in contrasts for quadratic in (False, True)
    }
    forests = {key: PatchForestBaseline([studies[n] for n in trained_on], contrasts, key) for key in contrasts}
    inputs = {id(studies[name]): model_inputs(model, studies[name]) for name in held_out}  # N4 once per study where the card asks
    methods = {
        "CollaGAN": lambda study, key: synthesise(
            model.generator, inputs[id(study)], contrasts.index(key), study.mask, smoothing=model_smoothing(model, study)),
        "CollaGAN, 8 views (opt-in)": lambda study, key: synthesise(
            model.generator, inputs[id(study)], contrasts.index(key), study.mask, smoothing=model_smoothing(model, study), views=8),
        "CollaGAN, no smoothing": lambda study, key: synthesise(
            model.generator, inputs[id(study)], contrasts.index(key), study.mask),
        "mean of inputs": lambda study, key: np.mean([study.images[k] for k in contrasts if k != key], axis=0),
        "linear regression": lambda study, key: regressions[(key, False)].predict(study),
        "quadratic regression": lambda study, key: regressions[(key, True)].predict(study),
        "patch random forest": lambda study, key: forests[key].predict(study),
    }
    single = None
    if args.single_input_weights is not None:
        single = SingleInputBaseline(load_model(args.single_input_weights), contrasts, model, [studies[n] for n in trained_on])
        methods["single-input CollaGAN"] = single
    rows, figure_rows, shading = [], [], {}
    for name in held_out:
        study = studies[name]
        subject_rows, fakes, shading[name] = evaluate_subject(study, name, methods, contrasts)
        for row in subject_rows:
            if single is not None and row["method"] == "single-input CollaGAN":
                row["single_input"] = single.chosen[row["contrast"]]
        rows += subject_rows
        index = figure_slice(study)
        for key in contrasts:
            fake = fakes[(key, "CollaGAN")]
            panels = [(f"{display_name(k)} (input)", study.images[k]) for k in contrasts if k != key]
            panels += [(f"{display_name(key)} CollaGAN", fake), (f"{display_name(key)} real", study.images[key]),
                       ("|CollaGAN - real|", np.abs(fake - study.images[key]))]
            figure_rows.append(montage_image(panels, study.mask, shared_window=(len(panels) - 2, len(panels) - 3), index=index))

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "model": model.name, "weights_sha256": model.card["sha256"], "held_out": held_out, "baselines_fitted_on": trained_on,
        "normalisation": NORMALISATION,
        "ssim": "3-D SSIM (7-voxel window) averaged over the brain (ssim_brain) and over the whole volume (ssim_volume)",
        "enhancement_proxy": f"brain voxels with z(T1Gd) - z(T1) > {ENHANCEMENT_MARGIN} (z over each volume's brain)",
        "slice_roughness_ratio": "mean |neighbouring-slice difference| of the imputed volume / the same of the real volume",
        "bias_corrected": f"brain metrics against the real volume after {BIAS_METHOD}",
        "shading_range": shading,  # per held-out subject and contrast: 95th over 5th percentile of the N4 field in the brain
        # CollaGAN and the single-input model; the other rows have none
        "smoothing": {"through_plane_sigma_mm": model.through_plane_mm, "in_plane_sigma_voxels": model.in_plane_voxels},
        "single_input_model": None if single is None else {
            "name": single.model.name, "sha256": single.model.card["sha256"],
            "commands": single.model.card.get("training", {}).get("commands", []),
            "choice": "per contrast, the single input with the best mean brain SSIM on the training subjects",
            "chosen": single.chosen, "training_ssim_brain": single.training_ssim},
        "results": rows,
    }
    write_text_atomic(args.out / "quality.json", json.dumps(report, indent=2) + "\n")
    table = markdown_table(rows, contrasts, list(methods))
    unshaded_table = bias_corrected_table(rows, contrasts, list(methods))
    write_text_atomic(args.out / "quality.md", f"Held-out subject(s): {', '.join(held_out)}. {NORMALISATION}.\n\n" + table
                      + f"\nThe same brain figures against the real volume as acquired and after {BIAS_METHOD}: the coil shading "
                        "of the acquired volume is in no method's output.\n\n" + unshaded_table)
    from PIL import Image

    figure = Image.new("L", (max(r.width for r in figure_rows), sum(r.height for r in figure_rows)))
    for i, row in enumerate(figure_rows):
        figure.paste(row, (0, sum(r.height for r in figure_rows[:i])))
    write_png(figure, args.out / "quality.png")
    print(table + "\n" + unshaded_table)
    print(f"wrote {args.out / 'quality.json'}, quality.md, quality.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
