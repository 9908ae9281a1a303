"""How far METHOD.md's normalisation (brain standard deviations) is from the metrics' (BraSyn: brain 0.5-99.5
percentiles to [0, 1]) on the training data: per subject and contrast, the two percentiles in brain standard
deviations; per contrast, the mean range, its coefficient of variation between subjects and where the 0.5th
percentile lies in the range. Why `--brasyn-scale` exists (preparation/brasyn_scale.py).

    python benchmarks/normalisation_spread.py --data ../shared/data/training.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import DEFAULT_CONTRASTS
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.preparation.data import discover_subjects, prepare_subject

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "training.json")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "normalisation_spread.json")
    args = parser.parse_args(argv)

    by_subject = {}
    for subject in discover_subjects(args.data, DEFAULT_CONTRASTS, incomplete=True):
        study = prepare_subject(subject, DEFAULT_CONTRASTS)
        by_subject[subject.name] = {key: [float(v) for v in np.percentile(image[study.mask], [0.5, 99.5])]
                                    for key, image in study.images.items()}
        print(subject.name, {key: f"{low:.2f}-{high:.2f}" for key, (low, high) in by_subject[subject.name].items()}, flush=True)
    summary = {}
    for key in DEFAULT_CONTRASTS:
        low, high = np.array([row[key] for row in by_subject.values() if key in row]).T
        spread, start = high - low, low / (high - low)
        summary[key] = {"subjects": len(low), "range_mean_sd": float(spread.mean()), "range_cv": float(spread.std() / spread.mean()),
                        "low_share_min": float(start.min()), "low_share_max": float(start.max())}
        print(f"{key}: 0.5-99.5 percentile range {spread.mean():.2f} brain SDs (cv {spread.std() / spread.mean():.3f}); "
              f"0.5th percentile at {start.min():.3f}-{start.max():.3f} of the range")
    report = {"data": str(args.data), "unit": "brain standard deviations (METHOD.md normalisation)",
              "percentiles": [0.5, 99.5], "by_subject": by_subject, "by_contrast": summary}
    write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
