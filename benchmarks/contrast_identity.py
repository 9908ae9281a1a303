"""The figures behind contrast_identity.py: each contrast's histogram centroid over the training subjects, and
how far, left out one subject at a time, the true assignment of each pair of contrasts is from the swapped one,
and, for a volume given alone (its partner absent), how much better it fits the partner's contrast than its own:
contrast_identity.lone_identity_doubts doubts it above 0, so the table counts the real volumes doubted (false
alarms) and the partner's volumes given in their place that are not (misses).

A pair is checked (CHECKED_PAIRS) only where every subject is told apart; the printed centroids and spread are
what contrast_identity.py holds. Writes JSON and a Markdown table.

    python benchmarks/contrast_identity.py --data ../shared/data/training.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import DEFAULT_CONTRASTS, display_name
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.preparation.contrast_identity import CHECKED_PAIRS, brain_ml, histogram_features
from CollaGANImputeLib.preparation.data import discover_subjects, prepare_subject

RESULTS = Path(__file__).resolve().parent / "results"


def centroids(features: dict[str, dict[str, np.ndarray]], subjects: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each contrast's mean features over `subjects`, and the features' root mean square distance to them."""
    centre = {k: np.mean([features[s][k] for s in subjects], axis=0) for k in DEFAULT_CONTRASTS}
    spread = np.sqrt(np.mean([(features[s][k] - centre[k]) ** 2 for s in subjects for k in DEFAULT_CONTRASTS], axis=0))
    return centre, spread


def margin(values: dict[str, np.ndarray], first: str, second: str, centre: dict[str, np.ndarray], spread: np.ndarray) -> float:
    """contrast_identity.swap_margin with given centroids: positive where the swapped assignment fits better."""
    def distance(v: np.ndarray, k: str) -> float:
        return float(np.sum(((v - centre[k]) / spread) ** 2))

    return distance(values[first], first) + distance(values[second], second) - distance(values[first], second) - distance(values[second], first)


def lone_margins(features: dict[str, dict[str, np.ndarray]], given: str, other: str) -> dict:
    """Left out one subject at a time: how much better a volume given as `given` fits `other` than `given`, for the
    subject's real `given` volume (should be negative) and its `other` volume given as `given` (positive)."""
    names, real, wrong = list(features), {}, {}
    for s in names:
        centre, spread = centroids(features, [n for n in names if n != s])

        def fits_other_better(v: np.ndarray) -> float:
            return float(np.sum(((v - centre[given]) / spread) ** 2) - np.sum(((v - centre[other]) / spread) ** 2))

        real[s], wrong[s] = fits_other_better(features[s][given]), fits_other_better(features[s][other])
    return {"real_highest": max(real.values()), "wrong_lowest": min(wrong.values()),
            "false_alarms": sum(m > 0 for m in real.values()), "misses": sum(m <= 0 for m in wrong.values()),
            "real": real, "wrong": wrong}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=RESULTS / "contrast_identity")
    args = parser.parse_args()
    features, brains = {}, {}
    for subject in discover_subjects(args.data, DEFAULT_CONTRASTS):
        study = prepare_subject(subject, DEFAULT_CONTRASTS)
        features[subject.name] = {k: histogram_features(a[study.mask]) for k, a in study.images.items()}
        brains[subject.name] = round(brain_ml(study), 1)
        print(subject.name, file=sys.stderr)
    names = list(features)
    pairs = {}
    for first, second in itertools.combinations(DEFAULT_CONTRASTS, 2):
        margins = [margin(features[s], first, second, *centroids(features, [n for n in names if n != s])) for s in names]
        pairs[f"{first}-{second}"] = {"checked": (first, second) in CHECKED_PAIRS, "false_alarms": int(sum(m > 0 for m in margins)),
                                      "closest_margin": -max(margins), "margins": dict(zip(names, margins))}
    lone = {f"{a} given, {b} absent": lone_margins(features, a, b) for pair in CHECKED_PAIRS for a, b in (pair, pair[::-1])}
    centre, spread = centroids(features, names)
    report = {"subjects": names, "centroids": {k: [round(float(v), 4) for v in c] for k, c in centre.items()},
              "spread": [round(float(v), 4) for v in spread], "pairs_left_one_out": pairs, "lone_left_one_out": lone,
              "features": {s: {k: [round(float(v), 5) for v in f] for k, f in by.items()} for s, by in features.items()},
              "brain_ml": brains, "smallest_brain_ml": min(brains.values())}
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    lines = [f"# Contrast identity: swapped pairs told apart, {len(names)} subjects left out one at a time", "",
             "| Pair | Checked | Subjects whose swap fits better | Closest margin |", "|---|---|---|---|"]
    lines += [f"| {display_name(p.split('-')[0])}-{display_name(p.split('-')[1])} | {'yes' if v['checked'] else 'no'} | "
              f"{v['false_alarms']} of {len(names)} | {v['closest_margin']:.1f} |" for p, v in pairs.items()]
    lines += ["", "A volume given alone (its partner absent): how much better it fits the partner's contrast than its own, left out "
              "one subject at a time (units of the features' spread; doubted above 0; only LONE_PAIRS are judged):", "",
              "| Given as | Partner absent | Real volumes: highest | doubted (false alarms) | Partner's volume given instead: lowest "
              "| not doubted (misses) |", "|---|---|---|---|---|---|"]
    lines += [f"| {display_name(k.split(' ')[0])} | {display_name(k.split(', ')[1].split(' ')[0])} | {v['real_highest']:.1f} | "
              f"{v['false_alarms']} of {len(names)} | {v['wrong_lowest']:.1f} | {v['misses']} of {len(names)} |" for k, v in lone.items()]
    lines += ["", f"Brain masks: {min(brains.values()):.0f} to {max(brains.values()):.0f} ml."]
    write_text_atomic(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(json.dumps({k: report[k] for k in ("centroids", "spread")}))


if __name__ == "__main__":
    main()
