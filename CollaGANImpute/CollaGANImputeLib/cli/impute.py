"""`collagan-impute impute` and `batch`: one study, or every study in a folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.contrasts import KNOWN_CONTRASTS, VOLUME_SUFFIXES, WRITABLE_SUFFIXES, display_name
from ..core.errors import InputError
from ..core.progress import ProgressReporter
from ..io.atomic import check_outputs
from ..io.series_recognition import recognise_study
from .options import (
    add_device_option,
    add_overwrite_option,
    add_planes_option,
    add_precision_option,
    add_prepare_options,
    add_progress_option,
    add_strict_option,
    add_views_option,
    precision_bf16,
)

if TYPE_CHECKING:
    from ..preparation.brain_prep import PrepareOptions


def _check_volume_outputs(outputs: Sequence[Path], inputs: Sequence[Path], overwrite: bool) -> None:
    """Refuse, before any work, volume outputs that cannot be written atomically, or would replace an input or,
    without --overwrite, any file (atomic.check_outputs)."""
    for output in outputs:
        if not output.name.lower().endswith(WRITABLE_SUFFIXES):
            raise InputError(f"output '{output}' must end in one of {', '.join(WRITABLE_SUFFIXES)}")
    check_outputs(outputs, {path: "one of the inputs" for path in inputs}, overwrite=overwrite)


# ----- impute ---------------------------------------------------------------------------------------
def _impute_parser(contrasts: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="collagan-impute impute", description="Impute a missing contrast of one study.")
    for key in contrasts:
        parser.add_argument(f"--{key}", action="append", metavar="PATH", help=f"{display_name(key)} volume (file or DICOM folder)")
    parser.add_argument("--study", type=Path, help="a folder whose file names say the contrasts (instead of --KEY options)")
    parser.add_argument("--missing", required=True, action="append",
                        help="a contrast to impute (repeatable: any set of the contrasts not given)")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="output volume (.nii.gz, .nii, .nrrd or .mha); with several --missing put {contrast} in it")
    parser.add_argument("--strategy", default="auto", choices=("auto", "joint", "chain"),
                        help="several absent contrasts: each from the inputs alone (joint, needs a model trained for any "
                             "subset) or one after another (chain); auto picks joint where the model allows")
    parser.add_argument("--weights", type=Path, help="model .safetensors with its .json card (default: the bundled model)")
    add_device_option(parser)
    parser.add_argument("--mask", type=Path, help="brain mask (default: voxels non-zero in the inputs)")
    parser.add_argument("--reference", help="contrast whose grid the output takes (default: the first input in model order)")
    parser.add_argument("--uncertainty", action="store_true",
                        help="also write a reliability map beside each output (NAME_uncertainty.EXT): where not to trust it")
    parser.add_argument("--batch-size", type=int, default=8)
    add_views_option(parser)
    add_planes_option(parser)
    add_precision_option(parser)
    add_overwrite_option(parser)
    add_strict_option(parser)
    add_prepare_options(parser)
    add_progress_option(parser)
    return parser


def _weights_option(argv: Sequence[str]) -> Path | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--weights", type=Path)
    known, _ = pre.parse_known_args(argv)
    return known.weights


def cmd_impute(argv: Sequence[str]) -> int:
    from ..inference.imputation import impute_all
    from ..inference.synthesis import select_device
    from ..io.volumes import write_volumes
    from ..model.model_card import bundled_weights, read_card
    from ..model.weights import load_model

    weights = _weights_option(argv)
    card_contrasts = read_card(weights or bundled_weights())["contrasts"] if "-h" not in argv and "--help" not in argv else []
    contrasts = list(dict.fromkeys([*card_contrasts, *KNOWN_CONTRASTS]))
    args = _impute_parser(contrasts).parse_args(argv)
    inputs: dict[str, Path] = {}
    for key in contrasts:
        given = getattr(args, key) or []
        if len(given) > 1:
            raise InputError(f"{display_name(key)}: {len(given)} files were given ({', '.join(given)}); give one per contrast")
        if given:
            inputs[key] = Path(given[0])
    study_files: dict[str, Path] = {}
    if args.study is not None:  # only the model's contrasts: a study may hold others (PD, ...) it does not take
        series = recognise_study(args.study, card_contrasts)  # the real scan of a "missing" contrast is kept safe too
        study_files = series.files
        for line in series.describe():
            print(f"study: {line}", file=sys.stderr)
        for key, path in study_files.items():
            if key not in args.missing:
                inputs.setdefault(key, path)
    outputs = _output_paths(args.output, args.missing)
    protected = [*inputs.values(), *study_files.values(), *([args.mask] if args.mask is not None else [])]
    _check_volume_outputs([*outputs.values(), *([_beside(o, "uncertainty") for o in outputs.values()] if args.uncertainty else [])],
                          protected, args.overwrite)
    device = select_device(args.device)
    model = load_model(weights, device)
    names = ", ".join(display_name(k) for k in args.missing)
    reporter = ProgressReporter(f"imputing {names}", lines=args.progress == "lines", unit="slice")
    results = impute_all(inputs, args.missing, model, strategy=args.strategy, mask=args.mask, reference=args.reference,
                         batch_size=args.batch_size, bf16=precision_bf16(args), views=args.views, planes=args.planes,
                         uncertainty=args.uncertainty, strict=args.strict, force=args.force, prepare=prepare_options(args), progress=reporter.update)
    reporter.close()
    present = [key for key in args.missing if key in study_files]
    if present:
        results[present[0]].notes.append(f"the study folder holds a real {', '.join(display_name(k) for k in present)} "
                                         f"('{study_files[present[0]].name}'): it was neither used nor replaced")
    for note in next(iter(results.values())).notes:
        print(f"note: {note}", file=sys.stderr)
    files, lines = {}, []
    for key, result in results.items():
        files[outputs[key]] = result.image
        lines.append(f"wrote {outputs[key]} ({display_name(key)} imputed by {model.name} from {result.method}; intensities in brain "
                     "standard deviations)")
        if result.uncertainty is not None:
            files[_beside(outputs[key], "uncertainty")] = result.uncertainty
            lines.append(f"wrote {_beside(outputs[key], 'uncertainty')} (its reliability map: {result.uncertainty_meaning})")
    write_volumes(files)  # all at once: an interrupted run leaves none of them
    print("\n".join(lines))
    return 0


def prepare_options(args: argparse.Namespace) -> PrepareOptions | None:
    """--prepare's settings (add_prepare_options), each step announced on stderr; None without --prepare."""
    from ..preparation.brain_prep import PrepareOptions

    if not args.prepare:
        if args.keep_intermediate is not None:
            raise InputError("--keep-intermediate keeps the steps of --prepare; give --prepare too")
        return None
    return PrepareOptions(args.brain_extractor, args.keep_intermediate,
                          on_step=None if args.progress == "lines" else lambda step: print(f"preparing: {step}", file=sys.stderr))


def _beside(path: Path, tag: str) -> Path:
    """NAME_tag.EXT next to NAME.EXT, keeping double suffixes such as .nii.gz."""
    suffix = next(s for s in sorted(VOLUME_SUFFIXES, key=len, reverse=True) if path.name.lower().endswith(s))
    return path.with_name(f"{path.name[: -len(suffix)]}_{tag}{path.name[-len(suffix):]}")


def _output_paths(pattern: Path, missing: Sequence[str]) -> dict[str, Path]:
    """One output per missing contrast: the path itself for one, its {contrast} placeholder filled for several."""
    if "{contrast}" not in str(pattern):
        if len(missing) > 1:
            raise InputError(f"output '{pattern}': with several contrasts to impute, put {{contrast}} in the output path")
        return {missing[0]: pattern}
    return {key: Path(str(pattern).replace("{contrast}", key)) for key in missing}


# ----- train ----------------------------------------------------------------------------------------


def cmd_batch(argv: Sequence[str]) -> int:
    import torch

    from ..inference.batch import impute_folder, manifest_path
    from ..inference.synthesis import select_device
    from ..model.weights import load_model
    from ..preparation.brain_prep import PrepareOptions

    p = argparse.ArgumentParser(prog="collagan-impute batch",
                                description="Impute a missing contrast for every study folder in a folder; a rerun skips finished studies.")
    p.add_argument("--studies", required=True, type=Path, help="a folder of study folders whose file names say the contrast")
    p.add_argument("--out", required=True, type=Path, help="output folder: <study>_<missing>_collagan.nii.gz and collagan_batch_<missing>.json")
    p.add_argument("--missing", required=True, help="the contrast to impute")
    p.add_argument("--weights", type=Path, help="model .safetensors with its .json card (default: the bundled model)")
    add_device_option(p)
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: one per GPU, else 1)")
    p.add_argument("--batch-size", type=int, default=8)
    add_views_option(p)
    add_planes_option(p)
    add_precision_option(p)
    add_overwrite_option(p)
    add_strict_option(p)
    add_prepare_options(p, intermediate=False)
    add_progress_option(p)
    args = p.parse_args(argv)
    if args.workers < 0:
        raise InputError(f"--workers {args.workers}: give a positive number of worker processes")
    device = select_device(args.device)
    workers = args.workers or (torch.cuda.device_count() if device.type == "cuda" else 1)
    model = load_model(args.weights, device)
    reporter = ProgressReporter(f"imputing {display_name(args.missing)}", lines=args.progress == "lines", unit="study")
    try:
        report = impute_folder(model, args.studies, args.out, args.missing, batch_size=args.batch_size, bf16=precision_bf16(args),
                               views=args.views, planes=args.planes, workers=workers, overwrite=args.overwrite, strict=args.strict, force=args.force,
                               prepare=PrepareOptions(args.brain_extractor) if args.prepare else None,
                               progress=lambda done, total, stage: reporter.update(done, total))
    finally:
        reporter.close()
    skipped = {name: outcome for name, outcome in report.items() if isinstance(outcome, str)}
    for name, reason in skipped.items():
        print(f"{name}: {reason}", file=sys.stderr)
    print(f"{len(report) - len(skipped)} of {len(report)} studies imputed in '{args.out}' "
          f"(finished cases are listed in {manifest_path(args.out, args.missing).name} with the notes of each imputation; "
          "a rerun skips them)")
    return 0


# ----- info -----------------------------------------------------------------------------------------
