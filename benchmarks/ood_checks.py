"""The margins behind ood_checks.py: every check's figure on each training subject (all must pass), on the same
subjects with 5 mm slices, with T2 given as T1 and T1 as T2 (swapped), with T2 given as T1 and no T2 (a doubt,
ood_checks.review_study), and on the raw TCGA-FG-6692 study as it came off the scanner. Writes
JSON and Markdown.

    python benchmarks/ood_checks.py --data ../shared/data/training.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import DEFAULT_CONTRASTS
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.io.series_recognition import recognise_study
from CollaGANImputeLib.preparation.contrast_identity import brain_ml
from CollaGANImputeLib.preparation.data import discover_subjects
from CollaGANImputeLib.preparation.ood_checks import MAX_BRAIN_ML, MAX_BRIGHT_RING, bright_ring, review_study
from CollaGANImputeLib.preparation.study import prepare_study

RESULTS = Path(__file__).resolve().parent / "results"


def _thick(path: Path) -> sitk.Image:
    """The volume with 5 mm slices: every fifth 1 mm slice's neighbourhood averaged, as a thick acquisition."""
    image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    return sitk.BinShrink(image, [1, 1, 5])


def row(name: str, volumes: dict) -> dict:
    study = prepare_study(volumes, DEFAULT_CONTRASTS)
    ring = bright_ring(study)
    findings, doubts = review_study(study)
    return {"subject": name, "brain_ml": brain_ml(study), "bright_ring": None if ring is None else ring[1],
            "ring_contrast": None if ring is None else ring[0],
            "slice_mm": max(max(g.spacing) for g in study.input_grids.values()),
            "findings": [f.check for f in findings], "doubts": len(doubts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--raw", type=Path, default=Path("../shared/data/raw/TCGA-FG-6692-native"))
    args = parser.parse_args()
    subjects = discover_subjects(args.data, DEFAULT_CONTRASTS)
    rows = []
    for subject in subjects:
        rows.append(row(subject.name, dict(subject.files)))
        rows.append(row(subject.name + " (5 mm)", {k: _thick(p) for k, p in subject.files.items()}))
        files = dict(subject.files)
        rows.append(row(subject.name + " (T1 and T2 swapped)", {**files, "t1": files["t2"], "t2": files["t1"]}))
        rows.append(row(subject.name + " (T2 as T1, no T2)", {"t1": files["t2"], "t1gd": files["t1gd"], "flair": files["flair"]}))
        print(*rows[-4:], sep="\n", file=sys.stderr)
    raw = recognise_study(args.raw, DEFAULT_CONTRASTS).files
    rows.append(row("raw TCGA-FG-6692 (T1, T2, FLAIR)", {k: raw[k] for k in ("t1", "t2", "flair")}))
    training = [r for r in rows if "(" not in r["subject"]]
    summary = {"training_subjects": len(training), "training_false_alarms": sum(bool(r["findings"]) for r in training),
               "training_doubts": sum(r["doubts"] for r in training),
               "thick_caught": sum("slice_thickness" in r["findings"] for r in rows if r["subject"].endswith("(5 mm)")),
               "swaps_caught": sum("contrast_identity" in r["findings"] for r in rows if r["subject"].endswith("swapped)")),
               "t2_as_t1_alone_doubted_or_refused": sum(bool(r["doubts"] or r["findings"]) for r in rows if r["subject"].endswith("no T2)")),
               "max_brain_ml": max(r["brain_ml"] for r in training), "limit_brain_ml": MAX_BRAIN_ML,
               "max_bright_ring_t1": max(r["bright_ring"] for r in training), "limit_bright_ring_t1": MAX_BRIGHT_RING["t1"]}
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / "ood_checks.json", json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    lines = ["| subject | brain ml | bright ring (T1) | slices mm | findings | doubts |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['subject']} | {r['brain_ml']:.0f} | {r['bright_ring'] if r['bright_ring'] is None else round(r['bright_ring'], 3)} "
              f"| {r['slice_mm']:.3g} | {', '.join(r['findings']) or '-'} | {r['doubts'] or '-'} |" for r in rows]
    write_text_atomic(RESULTS / "ood_checks.md", json.dumps(summary) + "\n\n" + "\n".join(lines) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
