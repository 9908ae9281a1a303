"""A contrast-importance report: the ranking's summary per contrast, its paired test, and the CSV,
figure and Markdown written from it."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import stats

from ..core.contrasts import display_name
from ..core.metrics import NORMALISATION
from ..io.atomic import write_text_atomic
from ..io.montage import write_png
from ..preparation.regions import PROXY_REGION, REGION_NAMES, REGIONS

FORMAT = "collagan-impute-importance/1"
METRICS = ("ssim_brain", "psnr_brain", "nmse_brain", "ssim_volume")
REGION_METRICS = ("ssim_brain", "psnr_brain", "nmse_brain")  # computed over the region instead of the brain
OUTSIDE = "outside_tumour"  # the brain outside every tumour region: METHOD's "inside and outside the tumour"
INPUT_UNITS = ("every volume in brain standard deviations: each real contrast divided by the standard deviation of its "
               "brain voxels (METHOD.md), the imputed one as the model outputs it on that scale; 0 outside the brain")
TEST_NAME = ("Wilcoxon signed-rank test, two-sided, paired over subjects (scipy.stats.wilcoxon): zero differences "
             "discarded; exact null distribution, or exhaustive sign permutations when differences tie")
SCORE_SSIM = ("1 - SSIM of the imputation inside the tumour regions (mean over the regions with voxels; region SSIM "
              "averages the 3-D SSIM map over the region; BraSyn normalisation). High: the other contrasts cannot "
              "predict this contrast's tumour appearance")
SCORE_DICE_LABELS = ("Dice loss of the segmenter: Dice(real inputs) - Dice(this contrast imputed), against the label map, "
                     "averaged over whole tumour, tumour core and enhancing tumour. High: segmentation needs the real contrast")
SCORE_DICE_AGREEMENT = ("Dice loss of the segmenter: 1 - Dice between its segmentation with this contrast imputed and its "
                        "segmentation of the real inputs, averaged over whole tumour, tumour core and enhancing tumour. "
                        "High: segmentation needs the real contrast")
TIE_BREAK = "equal Dice losses are ordered by 1 - tumour-region SSIM, then by the model's contrast order"


def paired_test(first: Sequence[float], second: Sequence[float]) -> dict:
    """Wilcoxon signed-rank test of first vs second over paired subjects, or p None with the reason."""
    differences = np.round(np.asarray(first, dtype=float) - np.asarray(second, dtype=float), 12)
    nonzero = differences[differences != 0]
    result = {"test": "Wilcoxon signed-rank (two-sided)", "n": int(differences.size), "n_nonzero": int(nonzero.size),
              "statistic": None, "p_value": None, "method": None, "reason": None}
    if differences.size < 2:
        result["reason"] = f"a paired test needs two or more subjects; there is {differences.size}"
    elif nonzero.size == 0:
        result["reason"] = "every difference is zero"
    else:
        ties = np.unique(np.abs(nonzero)).size < nonzero.size
        if nonzero.size <= (13 if ties else 50):
            result["method"] = "exhaustive sign permutations (tied differences)" if ties else "exact"
        else:
            result["method"] = "normal approximation"
        outcome = stats.wilcoxon(nonzero, method="auto")
        result["statistic"], result["p_value"] = float(outcome.statistic), float(outcome.pvalue)
    return result


@dataclass
class ImportanceReport:
    """Every number of an analysis, how each was obtained, and the ranking (first = most redundant)."""

    model: str
    weights_sha256: str
    contrasts: list[str]
    subjects: list[dict]  # {"name", "trained_on", "regions"}: "regions" is how that subject's regions were defined
    segmenter: str | None
    labels: bool
    rows: list[dict]  # one per subject and imputed contrast
    summary: dict[str, dict] = field(default_factory=dict)
    ranking: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def score_definition(self) -> str:
        if self.segmenter is None:
            return SCORE_SSIM
        return f"{SCORE_DICE_LABELS if self.labels else SCORE_DICE_AGREEMENT}; {TIE_BREAK}"

    @property
    def region_keys(self) -> list[str]:
        return list(REGIONS) if self.labels else [PROXY_REGION]

    @property
    def held_out(self) -> list[str]:
        """Subjects the model's card does not list among its training subjects: the honest test of it."""
        return [s["name"] for s in self.subjects if not s["trained_on"]]

    def ranking_over(self, names: Sequence[str], by: str = "score") -> list[str]:
        """The contrasts by mean score (or `by`="ssim_score") over the subjects `names`, first the most
        redundant; ties are ordered by mean 1 - tumour SSIM, then by the model's contrast order."""
        def order(key: str) -> tuple[float, float, int]:
            mine = [r for r in self.rows if r["contrast"] == key and r["subject"] in names]
            means = [mean_of_present([r[m] for r in mine]) for m in (by, "ssim_score")]
            return (*(math.inf if v is None else v for v in means), self.contrasts.index(key))

        return sorted(self.contrasts, key=order)

    def place(self, contrast: str, ranking: Sequence[str] | None = None) -> str:
        """'T1Gd ranks 4 of 4 (1 = most redundant, 4 = most indispensable)'."""
        ranking = self.ranking if ranking is None else ranking
        rank, count = ranking.index(contrast) + 1, len(ranking)
        return f"{display_name(contrast)} ranks {rank} of {count} (1 = most redundant, {count} = most indispensable)"

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "model": self.model, "weights_sha256": self.weights_sha256, "contrasts": self.contrasts,
            "subjects": self.subjects, "inputs": INPUT_UNITS, "normalisation": NORMALISATION,
            "ssim": "3-D SSIM, 7-voxel window, averaged over the brain (ssim_brain), the region, or the whole volume (ssim_volume)",
            "regions": sorted({s["regions"] for s in self.subjects}), "segmenter": self.segmenter,
            "dice_reference": None if self.segmenter is None else ("label map" if self.labels else "segmentation of the real inputs"),
            "dice_empty": "Dice is 1 when both regions are empty", "score": self.score_definition,
            "ssim_score": "1 - SSIM over the tumour regions, reported with every score: " + SCORE_SSIM, "test": TEST_NAME,
            "ranking": self.ranking, "ranking_held_out": self.ranking_over(self.held_out) if self.held_out else None,
            "ranking_by_ssim_score": self.ranking_over([s["name"] for s in self.subjects], by="ssim_score"),
            "summary": self.summary, "results": self.rows, "notes": self.notes,
        }

    def table(self) -> list[list[str]]:
        """Rows of text, ranking order: the header, then one row per contrast (for the module and Markdown)."""
        regions = self.region_keys
        header = ["Rank", "Contrast", "Score", "Per subject"] + (["1 - SSIM tumour"] if self.segmenter is not None else [])
        header += ["SSIM brain", "PSNR brain (dB)"] + [f"SSIM {REGION_NAMES[r]}" for r in regions] + ["SSIM outside tumour"]
        if self.segmenter is not None:
            header += [f"Dice {r.upper()} imputed" for r in REGIONS] + ["p (score)"]
        rows = [header]
        for rank, key in enumerate(self.ranking, 1):
            s = self.summary[key]
            row = [str(rank), display_name(key), _number(s["score"]),
                   ", ".join(_number(s["score_per_subject"][x["name"]]) for x in self.subjects)]
            row += [_number(s["ssim_score"])] if self.segmenter is not None else []
            row += [_number(s["ssim_brain"]), _number(s["psnr_brain"], 2)]
            row += [_number(s["regions"][r]["ssim_brain"]) for r in regions] + [_number(s[OUTSIDE]["ssim_brain"])]
            if self.segmenter is not None:
                row += [_number(s["dice_imputed"][r]) for r in REGIONS] + [_p_value(s["tests"]["score"])]
            rows.append(row)
        return rows


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _p_value(test: dict) -> str:
    if test["p_value"] is None:
        return f"- ({test['reason']})"
    nonzero = f", {test['n_nonzero']} non-zero" if test["n_nonzero"] < test["n"] else ""
    return f"{test['p_value']:.3g} (n={test['n']}{nonzero})"


def mean_of_present(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None




# ----- outputs --------------------------------------------------------------------------------------
def write_csv(report: ImportanceReport, path: str | Path) -> Path:
    """One row per subject and imputed contrast, every number flat."""
    columns = ["subject", "trained_on", "contrast", "rank", "score", "ssim_score", *METRICS]
    for region in [*report.region_keys, OUTSIDE]:
        columns += [f"{region}_voxels"] + [f"{region}_{m}" for m in REGION_METRICS]
    if report.segmenter is not None:
        columns += ["segmenter_reads"] + [f"dice_real_{r}" for r in REGIONS] + [f"dice_imputed_{r}" for r in REGIONS]
    trained = {s["name"]: s["trained_on"] for s in report.subjects}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        flat = {"subject": row["subject"], "trained_on": trained[row["subject"]], "contrast": row["contrast"],
                "rank": report.ranking.index(row["contrast"]) + 1, "score": row["score"], "ssim_score": row["ssim_score"],
                **{m: row[m] for m in METRICS}}
        for region in report.region_keys:
            flat.update({f"{region}_{m}": v for m, v in row["regions"][region].items()})
        flat.update({f"{OUTSIDE}_{m}": v for m, v in row[OUTSIDE].items()})
        if report.segmenter is not None:
            flat["segmenter_reads"] = row["segmenter_reads"]
            flat.update({f"dice_real_{r}": row["dice_real"][r] for r in REGIONS})
            flat.update({f"dice_imputed_{r}": row["dice_imputed"][r] for r in REGIONS})
        writer.writerow(flat)
    write_text_atomic(path, buffer.getvalue())
    return Path(path)


def figure(report: ImportanceReport) -> Image.Image:
    """Bar chart of the mean score per contrast in ranking order, one point per subject (hollow: a subject
    the model's card lists among its training subjects; filled: any other). Pillow only, like the other reports."""
    width, height, left, right, top, bottom = 640, 400, 70, 20, 60, 50
    scores = [v for key in report.ranking for v in report.summary[key]["score_per_subject"].values() if v is not None]
    scores += [report.summary[key]["score"] for key in report.ranking]
    low, high = min(0.0, min(scores)), max(scores)
    high = high + 0.1 * (high - low) if high > low else low + 1.0
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)

    def y(value: float) -> float:
        return top + (high - value) / (high - low) * (height - top - bottom)

    draw.text((10, 8), "Contrast importance: redundant (left) to indispensable (right)", fill="black")
    draw.text((10, 24), "score: " + ("1 - tumour-region SSIM of the imputation" if report.segmenter is None
                                     else "Dice loss of the segmenter when the contrast is imputed"), fill="black")
    draw.text((10, 40), "bars: mean over subjects; dots: subjects (hollow: the model was trained on it)", fill="#555555")
    for tick in np.linspace(low, high, 5):
        draw.line([(left - 4, y(tick)), (width - right, y(tick))], fill="#dddddd")
        draw.text((8, y(tick) - 6), f"{tick:.3f}", fill="black")
    draw.line([(left, y(0.0)), (width - right, y(0.0))], fill="black")
    slot = (width - left - right) / len(report.ranking)
    trained = {s["name"]: s["trained_on"] for s in report.subjects}
    for index, key in enumerate(report.ranking):
        summary = report.summary[key]
        centre = left + slot * (index + 0.5)
        draw.rectangle([centre - slot * 0.3, min(y(summary["score"]), y(0.0)), centre + slot * 0.3, max(y(summary["score"]), y(0.0))],
                       fill="#9bb7e0", outline="#1f4e9c")
        points = [(s, v) for s, v in summary["score_per_subject"].items() if v is not None]
        for number, (subject, value) in enumerate(points):
            x = centre + (number - (len(points) - 1) / 2) * 10
            box = [x - 4, y(value) - 4, x + 4, y(value) + 4]
            draw.ellipse(box, fill="white" if trained[subject] else "black", outline="black")
        draw.text((centre - 20, height - bottom + 8), f"{index + 1}. {display_name(key)}", fill="black")
        draw.text((centre - 20, height - bottom + 24), f"{summary['score']:.3f}", fill="black")
    return image


def _ranking_text(report: ImportanceReport, ranking: list[str]) -> str:
    return " < ".join(display_name(k) for k in ranking) + (f"; {report.place('t1gd', ranking)}." if "t1gd" in ranking else ".")


def markdown(report: ImportanceReport, figure_name: str) -> str:
    """The ranking table, T1Gd's place, per-subject figures and methods, as Markdown."""
    held_out = report.held_out
    trained = [s["name"] for s in report.subjects if s["trained_on"]]
    table = report.table()
    lines = [f"# Contrast importance: model {report.model}", "",
             "Ranking from redundant to indispensable: " + " < ".join(display_name(k) for k in report.ranking) + "."]
    if "t1gd" in report.ranking:
        lines += ["", f"**{report.place('t1gd')}.**"]
    if held_out and trained:
        lines += ["", f"On the subject(s) the model was not trained on alone ({', '.join(held_out)}): "
                  + _ranking_text(report, report.ranking_over(held_out))]
    if report.segmenter is not None:
        by_ssim = report.ranking_over([s["name"] for s in report.subjects], by="ssim_score")
        lines += ["", "By the image-based score alone (1 - tumour-region SSIM of the imputation, no segmenter): "
                  + _ranking_text(report, by_ssim)]
    lines += ["", f"Subjects not among the model's training subjects (by name, from its card): {', '.join(held_out) or 'none'}. "
              + (f"Training subjects of the model (their imputations are optimistic): {', '.join(trained)}." if trained else ""),
              "", f"Score: {report.score_definition}. Per-subject values in the order {', '.join(s['name'] for s in report.subjects)}.",
              "", "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    lines += ["", f"![Contrast importance]({figure_name})", "", "## Per subject", ""]
    columns = ["Subject", "Contrast", "Score", "SSIM brain", "PSNR brain (dB)"] + [f"SSIM {REGION_NAMES[r]} (voxels)" for r in report.region_keys]
    columns += ["SSIM outside tumour (voxels)"]
    if report.segmenter is not None:
        columns += [f"Dice {r.upper()} real / imputed" for r in REGIONS]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    trained_on = {s["name"]: s["trained_on"] for s in report.subjects}
    for row in report.rows:
        cells = [row["subject"] + (" (training subject)" if trained_on[row["subject"]] else ""), display_name(row["contrast"]), _number(row["score"]), _number(row["ssim_brain"]), _number(row["psnr_brain"], 2)]
        cells += [f"{_number(row['regions'][r]['ssim_brain'])} ({row['regions'][r]['voxels']})" for r in report.region_keys]
        cells.append(f"{_number(row[OUTSIDE]['ssim_brain'])} ({row[OUTSIDE]['voxels']})")
        if report.segmenter is not None:
            cells += [f"{row['dice_real'][r]:.3f} / {row['dice_imputed'][r]:.3f}" for r in REGIONS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Methods", "",
              f"- Imputation: each contrast in turn from the other {len(report.contrasts) - 1} with model {report.model} "
              f"(weights sha256 {report.weights_sha256[:12]}...). Inputs: {INPUT_UNITS}.",
              f"- Metrics: SSIM, PSNR and NMSE after {NORMALISATION}; in a region they are computed over the region's voxels.",
              "- Tumour regions: " + "; ".join(sorted({s['regions'] for s in report.subjects}))
              + ". Outside tumour: the brain outside every tumour region (for the proxy, outside the enhancement)."]
    if report.segmenter is not None:
        lines += [f"- Segmenter: {report.segmenter}; it sees {INPUT_UNITS}. Dice against the "
                  + ("label map" if report.labels else "segmentation of the real inputs (agreement; Dice(real inputs) is 1 by definition)")
                  + "; Dice is 1 when both regions are empty.",
                  f"- Paired test: {TEST_NAME}; p for the score tests Dice(real inputs) against Dice(imputed) averaged over regions."]
    lines += [f"- Note: {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def report_paths(folder: str | Path, stem: str = "importance") -> dict[str, Path]:
    """Where `write_report` writes, so a command can check its outputs before any work."""
    return {kind: Path(folder) / f"{stem}.{kind}" for kind in ("json", "csv", "md", "png")}


def write_report(report: ImportanceReport, folder: str | Path, stem: str = "importance") -> dict[str, Path]:
    """JSON, CSV, Markdown and PNG in `folder`, each written atomically."""
    paths = report_paths(folder, stem)
    write_text_atomic(paths["json"], json.dumps(report.to_dict(), indent=2) + "\n")
    write_csv(report, paths["csv"])
    write_png(figure(report), paths["png"])
    write_text_atomic(paths["md"], markdown(report, paths["png"].name))
    return paths
