"""How well the uncertainty map ranks the imputation's actual error, on a subject the model never saw.

For each contrast missing in turn: the plain imputation, its |error| against the real contrast (both
BraSyn-normalised, metrics.py), the uncertainty (reliability.py), and the Spearman rank correlation
between uncertainty and |error| over all brain voxels and inside the enhancement proxy (regions.py), and
over the brain once more with the error taken against the real contrast freed of its coil shading by N4
(bias_field.py): how much of what the map misses is shading no imputation has. A last figure asks whether
the error could be ranked at all: the Spearman correlation of |error| with the imputation's distance from the
real contrast after a 3x3x3 median filter, which a map would reach if it knew the imputation's systematic
error and nothing of the real scan's noise.
Also the run time of the uncertainty map over that of a plain imputation.

On a CPU the "flips" map of a whole volume takes many minutes per contrast; `--every K` keeps every K-th
axial slice (the figure's among them), a fixed subsample of the brain's voxels. Slices are imputed
independently, but the brain's box (the canvas) then comes from the kept slices, so the imputation
differs slightly from the whole volume's.

Writes JSON, a Markdown table and a PNG figure (T1Gd missing: real, imputed, |error|, uncertainty per
method, on the slice with most enhancement).

    python benchmarks/reliability.py [--method flips] [--method subsets] [--method calibrated] [--weights W] [--write-card]

`--write-card` writes each method's Spearman correlations over the brain, and which slices they cover, into the model
card ("reliability_held_out"), from which imputations with a map tell the user where it ranks the error
weakly (model_card.held_out_caveat).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.stats import rankdata, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from _measure import machine  # noqa: E402
from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.metrics import NORMALISATION, brasyn_normalise
from CollaGANImputeLib.inference.intensity_landmarks import model_landmarks
from CollaGANImputeLib.inference.reliability import CANVASES, METHODS, available_methods, describe, reliability_map
from CollaGANImputeLib.inference.synthesis import model_inputs, model_smoothing, synthesise
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.io.montage import montage_image, write_png
from CollaGANImputeLib.model.model_card import WEAK_RANKING, update_card
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.bias_field import bias_corrected
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects, prepare_subject
from CollaGANImputeLib.preparation.regions import ENHANCEMENT_MARGIN, PROXY_REGION, enhancement_proxy
from quality import figure_slice  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def spearman(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float | None:
    return float(spearmanr(a[region], b[region])[0]) if region.sum() > 2 else None


def map_percentile(uncertainty: np.ndarray, brain: np.ndarray, region: np.ndarray) -> float | None:
    """Mean percentile rank over the brain (0-100) of the map inside `region`."""
    if not (region & brain).any():
        return None
    ranks = rankdata(uncertainty[brain]) / brain.sum() * 100
    return float(ranks[region[brain]].mean())


def colour_panel(title: str, plane: np.ndarray, brain: np.ndarray, height: int) -> Image.Image:
    """One uncertainty slice in a colour map (0 to its brain's 99.5th percentile), titled like montage tiles."""
    from matplotlib import colormaps  # the "bench" extra

    high = max(float(np.percentile(plane[brain], 99.5)), 1e-8) if brain.any() else 1.0
    rgb = (colormaps["inferno"](np.clip(plane / high, 0, 1))[..., :3] * 255).astype(np.uint8)
    rgb[~brain] = 0
    tile = Image.new("RGB", (plane.shape[1], height), 0)
    tile.paste(Image.fromarray(rgb), (0, height - plane.shape[0]))
    ImageDraw.Draw(tile).text((4, 3), title, fill=(255, 255, 255))
    return tile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "manifest.json")
    parser.add_argument("--weights", type=Path, help="default: the bundled model")
    parser.add_argument("--held-out", default="BraTS-GLI-00001-000")
    parser.add_argument("--method", action="append", choices=METHODS, help="repeatable; default: flips")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--canvases", type=int, default=len(CANVASES), help="flips: use the first N canvases of reliability.CANVASES")
    parser.add_argument("--every", type=int, default=1, help="keep every K-th axial slice (default: all)")
    parser.add_argument("--stem", default="reliability", help="output file names: STEM.json, STEM.md, STEM.png")
    parser.add_argument("--write-card", action="store_true", help="write the brain Spearman figures into the model card")
    args = parser.parse_args(argv)
    methods = args.method or ["flips"]

    model = load_model(args.weights)
    refused = [m for m in methods if m not in available_methods(model.card)]
    if refused:
        parser.error(f"model '{model.name}' offers {', '.join(available_methods(model.card))}, not: {', '.join(refused)} "
                     "(subsets needs a model trained for any subset, calibrated a card with an error model: collagan-impute calibrate)")
    if "calibrated" in methods and args.held_out in model.card["error_model"]["fitted_on"]:
        parser.error(f"the error model of '{model.name}' was fitted on {args.held_out}: its figures there would be in-sample")
    contrasts = model.contrasts
    if args.held_out in model.card.get("training", {}).get("train_subjects", []):
        if args.write_card:  # the card would call in-sample figures held out
            parser.error(f"--write-card: {args.held_out} is one of the model's training subjects, not held out")
        print(f"warning: {args.held_out} is one of the model's training subjects", file=sys.stderr)
    subject, = only_subjects(discover_subjects(args.data, contrasts), [args.held_out], args.data)
    study = prepare_subject(subject, contrasts)
    figure_at = figure_slice(study, {PROXY_REGION: enhancement_proxy(study.images["t1gd"], study.images["t1"], study.mask)})
    kept = np.arange(figure_at % args.every, study.mask.shape[0], args.every)
    index = int(np.flatnonzero(kept == figure_at)[0])
    brain, stack = study.mask[kept], np.ascontiguousarray(model_inputs(model, study)[:, kept])
    proxy = enhancement_proxy(study.images["t1gd"], study.images["t1"], study.mask)[kept]
    reals = {key: study.images[key][kept] for key in contrasts}
    x_mm, y_mm, z_mm = study.canonical_spacing
    spacing = (x_mm, y_mm, z_mm * args.every)

    rows, figure_rows = [], []
    for key in contrasts:
        target = contrasts.index(key)
        smoothing = model_smoothing(model, key, study.slice_spacing * args.every)  # kept slices lie `every` slices apart
        started = time.monotonic()
        plain = model_landmarks(model, key, synthesise(model.generator, stack, target, brain, smoothing=smoothing, planes=1), brain)
        plain_seconds = time.monotonic() - started
        real_n = brasyn_normalise(reals[key], brain)
        unshaded_n = brasyn_normalise(bias_corrected(reals[key], brain, spacing), brain)
        plain_n = brasyn_normalise(plain, brain)
        systematic = spearman(np.abs(plain_n - ndimage.median_filter(real_n, size=3)), np.abs(plain_n - real_n), brain)
        for method in methods:
            spread = model.card["error_model"]["spread"] if method == "calibrated" else method
            started = time.monotonic()
            central, uncertainty = reliability_map(model, stack, target, brain, method=method, canvases=CANVASES[: args.canvases],
                                                   smoothing=smoothing)
            seconds = time.monotonic() - started
            central_n = brasyn_normalise(central, brain)
            error = np.abs(central_n - real_n)
            rows.append({
                "contrast": key, "method": method, "predictions": 2 * args.canvases if spread == "flips" else len(contrasts),
                "map": describe(method),
                "spearman_brain": spearman(uncertainty, error, brain),
                "spearman_enhancing": spearman(uncertainty, error, proxy),
                "spearman_brain_bias_corrected": spearman(uncertainty, np.abs(central_n - unshaded_n), brain),
                "spearman_brain_systematic_error": systematic,
                "brain_voxels": int(brain.sum()), "enhancing_voxels": int(proxy.sum()),
                "mean_abs_error_brain": float(error[brain].mean()),
                "mean_uncertainty_brain": float(uncertainty[brain].mean()),
                "enhancing_map_percentile": map_percentile(uncertainty, brain, proxy),
                "central_is_plain_imputation": bool(np.allclose(central, plain, atol=1e-5)),
                "seconds_plain": round(plain_seconds, 1), "seconds_uncertainty": round(seconds, 1),
                "time_ratio": round(seconds / plain_seconds, 2),
            })
            print(f"{display_name(key)} {method}: Spearman brain {rows[-1]['spearman_brain']:.3f}, "
                  f"time x{rows[-1]['time_ratio']}", file=sys.stderr)
            if key == "t1gd":
                panels = [("T1Gd real", reals[key]), ("T1Gd imputed", central), ("|error| (BraSyn)", error)]
                grey = montage_image(panels, brain, shared_window=(0, 1), index=index)
                colour = colour_panel(f"uncertainty ({method})", uncertainty[index], brain[index], grey.height)
                row = Image.new("RGB", (grey.width + colour.width, grey.height))
                row.paste(grey, (0, 0))
                row.paste(colour, (grey.width, 0))
                figure_rows.append(row)

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "model": model.name, "weights_sha256": model.card["sha256"], "held_out": args.held_out,
        "error": f"|real - imputed| after BraSyn normalisation of each ({NORMALISATION})",
        "uncertainty": {m: describe(m) for m in methods},
        "error_model": model.card.get("error_model") if "calibrated" in methods else None,
        "spearman": "scipy.stats.spearmanr over the brain voxels of the kept slices; enhancing: inside the enhancement proxy",
        "slices": (f"one axial slice in {args.every}" if args.every > 1 else "every axial slice")
        + f" ({len(kept)} of {study.mask.shape[0]}, the figure's slice {figure_at} among them)",
        "enhancement_proxy": f"brain voxels with z(T1Gd) - z(T1) > {ENHANCEMENT_MARGIN} (regions.py)",
        "spearman_brain_bias_corrected": "the same over the brain, the error taken against the real volume after N4 correction",
        "spearman_brain_systematic_error": "Spearman over the brain of |error| with |imputed - the real volume after a 3x3x3 "
                                           "median filter|: what a map knowing the error but not the scan's noise would reach",
        "time_ratio": "seconds of reliability_map (plain imputation included) / seconds of one plain imputation",
        "enhancing_map_percentile": "mean percentile rank (0-100, over the brain) of the map's values inside the enhancement proxy: "
                                    "whether the map flags the region as a whole, even where it does not rank the error within it",
        "target": f"Spearman over brain voxels >= {WEAK_RANKING} per contrast",
        "machine": machine(), "results": rows,
    }
    write_text_atomic(args.out / f"{args.stem}.json", json.dumps(report, indent=2) + "\n")
    lines = ["| contrast | method (predictions) | Spearman brain | Spearman brain, N4 real | Spearman enh. | mean abs. error brain | "
             "systematic error, brain | time ratio |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        enhancing = "-" if r["spearman_enhancing"] is None else f"{r['spearman_enhancing']:.3f}"
        lines.append(f"| {display_name(r['contrast'])} | {r['method']} ({r['predictions']}) | {r['spearman_brain']:.3f} | "
                     f"{r['spearman_brain_bias_corrected']:.3f} | {enhancing} | "
                     f"{r['mean_abs_error_brain']:.3f} | {r['spearman_brain_systematic_error']:.3f} | {r['time_ratio']:.1f} |")
    table = "\n".join(lines) + "\n"
    write_text_atomic(args.out / f"{args.stem}.md", f"Model {model.name}, held-out subject {args.held_out}. Error: {report['error']}. "
                      f"Spearman over the brain voxels of {report['slices']}; target >= {WEAK_RANKING}.\n\n" + table)
    figure = Image.new("RGB", (max(r.width for r in figure_rows), sum(r.height for r in figure_rows)))
    for number, row in enumerate(figure_rows):
        figure.paste(row, (0, sum(r.height for r in figure_rows[:number])))
    write_png(figure, args.out / f"{args.stem}.png")
    print(table)
    print(f"wrote {args.out / args.stem}.json, .md and .png", file=sys.stderr)
    if args.write_card:
        recorded = dict(model.card.get("reliability_held_out", {}))
        for method in methods:
            recorded[method] = {"subjects": [args.held_out], "source": f"benchmarks/reliability.py ({report['slices']})",
                                "spearman_brain": {r["contrast"]: round(r["spearman_brain"], 3) for r in rows if r["method"] == method}}
        print(f"wrote the figures into {update_card(model.weights_path, {'reliability_held_out': recorded})}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
