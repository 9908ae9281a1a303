"""`collagan-impute evaluate` and `demo`: score imputations against real contrasts; impute the sample case."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..core.contrasts import display_name
from ..io.atomic import check_outputs
from .options import (
    add_data_option,
    add_device_option,
    add_overwrite_option,
    add_planes_option,
    add_precision_option,
    add_views_option,
    precision_bf16,
)


def cmd_evaluate(argv: Sequence[str]) -> int:
    from ..analysis.evaluation import evaluate_subjects
    from ..inference.synthesis import select_device
    from ..io.atomic import write_text_atomic
    from ..model.weights import load_model
    from ..preparation.data import discover_subjects, only_subjects

    p = argparse.ArgumentParser(prog="collagan-impute evaluate", description="Impute each contrast from the others and score it.")
    add_data_option(p)
    p.add_argument("--weights", type=Path)
    p.add_argument("--json", required=True, type=Path, help="where to write the metrics")
    p.add_argument("--subject", action="append", default=[], help="evaluate only these subjects (repeatable)")
    p.add_argument("--missing", action="append", default=[], help="contrasts to impute (default: each in turn)")
    p.add_argument("--bias-corrected", action="store_true",
                   help="score against each real volume after N4 bias field correction: its coil shading is absent from any imputation")
    add_views_option(p)
    add_planes_option(p)
    add_precision_option(p)
    add_device_option(p)
    add_overwrite_option(p)
    args = p.parse_args(argv)
    check_outputs([args.json], overwrite=args.overwrite)
    model = load_model(args.weights, select_device(args.device))
    subjects = only_subjects(discover_subjects(args.data, model.contrasts), args.subject, args.data)
    report = evaluate_subjects(model, subjects, args.missing or None, bias_corrected=args.bias_corrected, views=args.views, planes=args.planes,
                               bf16=precision_bf16(args),
                               progress=lambda m: print(m, file=sys.stderr))
    write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    for key, values in report["mean"].items():
        print(f"{display_name(key):6s} SSIM(brain) {values['ssim_brain']:.3f}  PSNR(brain) {values['psnr_brain']:.2f} dB  "
              f"NMSE(brain) {values['nmse_brain']:.3f}  SSIM(volume) {values['ssim_volume']:.3f}")
    print(f"(against {report['reference']}; {report['normalisation']})\nwrote {args.json}")
    return 0


# ----- demo -----------------------------------------------------------------------------------------
def cmd_demo(argv: Sequence[str]) -> int:
    from ..analysis.demo import run_demo

    p = argparse.ArgumentParser(prog="collagan-impute demo", description="Impute a contrast of the bundled sample case.")
    p.add_argument("--missing", default="t1gd", help="contrast to impute (default t1gd)")
    p.add_argument("--out", type=Path, default=Path("collagan-demo"), help="output folder")
    p.add_argument("--weights", type=Path)
    add_device_option(p)
    add_overwrite_option(p)
    args = p.parse_args(argv)
    started = time.monotonic()
    outputs = run_demo(args.missing, args.out, args.weights, args.device, overwrite=args.overwrite)
    metrics = json.loads(outputs["metrics"].read_text())
    print(f"{display_name(args.missing)} imputed in {time.monotonic() - started:.1f} s: SSIM(brain) {metrics['ssim_brain']:.3f}, "
          f"PSNR(brain) {metrics['psnr_brain']:.2f} dB, NMSE(brain) {metrics['nmse_brain']:.3f} ({metrics['normalisation']})")
    for kind, path in outputs.items():
        print(f"wrote {kind}: {path}")
    return 0


# ----- batch ----------------------------------------------------------------------------------------
