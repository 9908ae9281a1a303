"""`collagan-impute calibrate`: fit a model's error model (the "calibrated" reliability map) on subjects
with every contrast, and store it in the model card."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core.contrasts import display_name
from ..core.errors import InputError
from .options import add_data_option, add_device_option, add_overwrite_option, add_progress_option


def cmd_calibrate(argv: Sequence[str]) -> int:
    from ..core.progress import ProgressReporter
    from ..inference.reliability import SPREADS, calibrate
    from ..inference.synthesis import select_device
    from ..io.atomic import check_outputs
    from ..model.model_card import card_path_for, update_card
    from ..model.weights import load_model
    from ..preparation.data import discover_subjects, only_subjects, prepare_subject

    p = argparse.ArgumentParser(
        prog="collagan-impute calibrate",
        description="Fit the error model behind the 'calibrated' reliability map on subjects with every contrast (by default the "
                    "model's own training subjects, never the ones you will evaluate it on) and write it into the model card.")
    add_data_option(p)
    p.add_argument("--weights", required=True, type=Path, help="model .safetensors; its .json card gains an 'error_model' entry")
    p.add_argument("--subject", action="append", default=[], help="fit on these subjects (repeatable; default: the card's training subjects)")
    p.add_argument("--spread", choices=SPREADS, help="the spread the map builds on (default: subsets where the model allows it)")
    p.add_argument("--every", type=int, default=3, help="use every K-th brain slice (default 3)")
    add_device_option(p)
    add_progress_option(p)
    add_overwrite_option(p)
    args = p.parse_args(argv)
    if args.every < 1:
        raise InputError(f"--every must be at least 1, not {args.every}")
    model = load_model(args.weights, select_device(args.device))
    if "error_model" in model.card and not args.overwrite:
        raise InputError(f"the card of '{args.weights}' already holds an error model (fitted on "
                         f"{', '.join(model.card['error_model'].get('fitted_on', []))}); give --overwrite to replace it")
    check_outputs([card_path_for(model.weights_path)], {model.weights_path: "the model's weights"}, overwrite=True)  # writable, before the work
    subjects = discover_subjects(args.data, model.contrasts)
    names = args.subject or [s.name for s in subjects if s.name in model.card.get("training", {}).get("train_subjects", [])]
    if not names:
        raise InputError(f"none of model '{model.name}''s training subjects is in '{args.data}': name the subjects to fit on with --subject")
    chosen = only_subjects(subjects, names, args.data)
    reporter = ProgressReporter("calibration", lines=args.progress == "lines", unit="imputation")
    try:
        studies = {s.name: prepare_subject(s, model.contrasts) for s in chosen}
        block = calibrate(model, studies, spread_method=args.spread, every=args.every, progress=reporter.update)
    finally:
        reporter.close()
    block["command"] = "collagan-impute calibrate " + " ".join(shlex.quote(a) for a in argv)
    # The held-out figures of the previous error model's map (benchmarks/reliability.py --write-card) no longer hold.
    measured = {m: v for m, v in model.card.get("reliability_held_out", {}).items() if m != "calibrated"}
    card = update_card(model.weights_path, {"error_model": block, "reliability_held_out": measured})
    for key, rho in block["spearman_on_fitted_subjects"].items():
        print(f"{display_name(key):<6} Spearman(map, |error|) on the fitted subjects {rho:.3f}")
    print(f"wrote the error model into {card} (fitted on {', '.join(block['fitted_on'])}; spread: {block['spread']})", file=sys.stderr)
    return 0
