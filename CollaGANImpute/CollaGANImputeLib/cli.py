"""`collagan-impute`: impute, train, evaluate, demo and info from a shell or Slicer's PythonSlicer.

Every subcommand calls the same library functions as the Slicer module. Bad input ends with one line
naming the file or contrast and the problem, exit code 2, and no output file.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import check_outputs
from .contrasts import DEFAULT_CONTRASTS, KNOWN_CONTRASTS, VOLUME_SUFFIXES, WRITABLE_SUFFIXES, display_name
from .errors import EXIT_BAD_INPUT, EXIT_CANCELLED, Cancelled, InputError, ModelError
from .cli_options import add_data_option, add_device_option, add_overwrite_option, add_prepare_options, add_progress_option, add_strict_option
from .progress import ProgressReporter
from .calibrate_cli import cmd_calibrate
from .importance_cli import cmd_importance
from .reading_cli import cmd_reading_session
from .series_recognition import recognise_study

if TYPE_CHECKING:
    from .brain_prep import PrepareOptions


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
    add_overwrite_option(parser)
    add_strict_option(parser)
    add_prepare_options(parser)
    add_progress_option(parser)
    return parser


def add_views_option(parser: argparse.ArgumentParser) -> None:
    """--views N: test-time averaging of shifted and mirrored views (inference.VIEWS), for imputing commands."""
    parser.add_argument("--views", type=int, default=1, metavar="N",
                        help="average N shifted and mirrored views, up to 8: N times the work on uncropped slices (8 views: 8 to 11 "
                             "times as long), smoother and closer to the real contrast (README, The bundled model); default 1")


def _weights_option(argv: Sequence[str]) -> Path | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--weights", type=Path)
    known, _ = pre.parse_known_args(argv)
    return known.weights


def cmd_impute(argv: Sequence[str]) -> int:
    from .inference import impute_all, select_device
    from .model_card import bundled_weights, read_card
    from .model_io import load_model
    from .volumes import write_volumes

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
                         batch_size=args.batch_size, views=args.views, uncertainty=args.uncertainty, strict=args.strict,
                         force=args.force, prepare=prepare_options(args), progress=reporter.update)
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
        lines.append(f"wrote {outputs[key]} ({display_name(key)} imputed by {model.name}; intensities in brain standard deviations)")
        if result.uncertainty is not None:
            files[_beside(outputs[key], "uncertainty")] = result.uncertainty
            lines.append(f"wrote {_beside(outputs[key], 'uncertainty')} (its reliability map: {result.uncertainty_meaning})")
    write_volumes(files)  # all at once: an interrupted run leaves none of them
    print("\n".join(lines))
    return 0


def prepare_options(args: argparse.Namespace) -> PrepareOptions | None:
    """--prepare's settings (add_prepare_options), each step announced on stderr; None without --prepare."""
    from .brain_prep import PrepareOptions

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
def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="collagan-impute train", description="Train CollaGAN on a manifest or a folder of subject folders.")
    add_data_option(p)
    p.add_argument("--out", required=True, type=Path, help="run folder: checkpoint, logs, exported model")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly where its checkpoint stopped (its saved settings apply; only --steps may change)")
    p.add_argument("--steps", type=int, help="train until this step (default 1000; with --resume, the run's own target unless given)")
    p.add_argument("--contrasts", default=",".join(DEFAULT_CONTRASTS), help="comma-separated contrast keys, in model order")
    p.add_argument("--validation", action="append", default=[], metavar="SUBJECT", help="subject held out for validation (repeatable)")
    p.add_argument("--branch-width", type=int, default=16)
    p.add_argument("--decoder-width", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--unit", default="ccnl", choices=("ccnl", "plain"))
    p.add_argument("--no-ccam", action="store_true")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--crop", type=int, default=0, help="train on random CROP x CROP windows of the brain-centred canvas (0: whole canvas)")
    p.add_argument("--optimizer", default="adam", choices=("adam", "adamw"), help="adam (METHOD.md) or adamw (decoupled weight decay)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--lr-discriminator", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--decay-every", type=int, default=400)
    p.add_argument("--decay-rate", type=float, default=0.99, help="the learning rate is multiplied by this every --decay-every steps")
    from .losses import LossWeights

    defaults = LossWeights()
    p.add_argument("--cycle-l1", type=float, default=defaults.cycle_l1, help="weight of the multiple-cycle L1 (METHOD.md 10)")
    p.add_argument("--cycle-ssim", type=float, default=defaults.cycle_ssim, help="weight of the multiple-cycle SSIM loss (METHOD.md 1)")
    p.add_argument("--adversarial", type=float, default=defaults.adversarial,
                   help="weight of the generator's LSGAN and classification terms (METHOD.md 1); 0 with zero cycle weights: "
                        "the fast direct phase, one generator pass a step and no discriminator")
    p.add_argument("--direct-l1", type=float, default=0.0, help="weight of the direct L1 (public MRI code 0, CVPR code 10)")
    p.add_argument("--direct-ssim", type=float, default=0.0, help="weight of the SSIM loss on the direct output")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--bias-correct", action="store_true",
                   help="train on studies freed of their coil shading (N4); the model then corrects its inputs the same way")
    p.add_argument("--missing-min", type=int, default=1, help="fewest contrasts absent per sample (default 1)")
    p.add_argument("--missing-max", type=int, default=1,
                   help="most contrasts absent per sample: 1 is CollaGAN, N-1 any subset (MM-GAN), with --missing-min N-1 a single-input model")
    p.add_argument("--curriculum-steps", type=int, default=0,
                   help="grow the most absent contrasts from --missing-min to --missing-max over this many steps")
    p.add_argument("--init", type=Path, metavar="CHECKPOINT",
                   help="start from the networks of another run's checkpoint.safetensors (fine-tuning; optimisers start afresh)")
    p.add_argument("--seed", type=int, default=0)
    add_device_option(p)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--validate-every", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--val-slices", type=int, default=16, help="evenly spaced brain slices per validation subject")
    p.add_argument("--name", default="model", help="exported weights: OUT/NAME.safetensors and OUT/NAME.json")
    p.add_argument("--description", default="", help="free text for the model card")
    add_progress_option(p)
    return p


def cmd_train(argv: Sequence[str]) -> int:
    import torch

    from .bias_field import corrected_study
    from .data import build_slice_set, canvas_for, discover_subjects, prepare_subject, split_subjects
    from .distributed import start, stop, world_from_env
    from .inference import select_device
    from .losses import LossWeights
    from .networks import DiscriminatorConfig, GeneratorConfig
    from .checkpoint import load_checkpoint
    from .training import CHECKPOINT_NAME, TrainConfig, Trainer

    args = _train_parser().parse_args(argv)
    # Under torchrun every process runs this command; rank 0 alone prints, writes and exports.
    world = world_from_env()
    device = select_device(args.device)
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
    checkpoint = args.out / CHECKPOINT_NAME
    if args.resume:
        if not checkpoint.exists():
            raise InputError(f"--resume: no checkpoint in '{args.out}'")
        # The run continues exactly as it was configured; only the number of steps may grow.
        saved = load_checkpoint(checkpoint)
        config = TrainConfig.from_dict(saved["config"])
        config.steps = args.steps if args.steps is not None else config.steps
    else:
        if checkpoint.exists():
            raise InputError(f"'{args.out}' already holds a run; use --resume to continue it or choose another --out")
        contrasts = [c.strip() for c in args.contrasts.split(",") if c.strip()]
        n = len(contrasts)
        if not 1 <= args.missing_min <= args.missing_max <= n - 1:
            raise InputError(f"--missing-min {args.missing_min} and --missing-max {args.missing_max}: need "
                             f"1 <= min <= max <= {n - 1} for {n} contrasts")
        config = TrainConfig(
            contrasts=contrasts, validation_subjects=args.validation,
            generator=GeneratorConfig(n, args.branch_width, args.decoder_width, args.depth, args.unit, not args.no_ccam),
            discriminator=DiscriminatorConfig(n),
            weights=LossWeights(cycle_l1=args.cycle_l1, cycle_ssim=args.cycle_ssim, adversarial=args.adversarial,
                                generator_classification=args.adversarial, direct_l1=args.direct_l1, direct_ssim=args.direct_ssim),
            steps=args.steps if args.steps is not None else TrainConfig.steps, batch_size=args.batch_size, lr=args.lr, lr_discriminator=args.lr_discriminator,
            weight_decay=args.weight_decay, decay_rate=args.decay_rate, decay_every=args.decay_every, augment=not args.no_augment,
            crop=args.crop, optimizer=args.optimizer, bias_correct=args.bias_correct,
            missing_min=args.missing_min, missing_max=args.missing_max, curriculum_steps=args.curriculum_steps, seed=args.seed,
            bf16=args.bf16, validate_every=args.validate_every, checkpoint_every=args.checkpoint_every,
        )
    contrasts = config.contrasts
    subjects = discover_subjects(args.data, contrasts, incomplete=True)
    train_subjects, validation_subjects = split_subjects(subjects, config.validation_subjects)
    if world.is_main:
        print(f"training on {', '.join(s.name for s in train_subjects)}; validating on "
              f"{', '.join(s.name for s in validation_subjects) or 'none'}"
              + (f"; {world.size} processes" if world.distributed else ""), file=sys.stderr)
    loading = ProgressReporter("loading subjects", len(subjects), lines=args.progress == "lines", unit="subject")
    studies = {}
    for number, subject in enumerate(subjects, 1):
        studies[subject.name] = prepare_subject(subject, contrasts)
        loading.update(number)
    loading.close()
    if config.bias_correct:
        studies = {name: corrected_study(study) for name, study in studies.items()}
    canvas = canvas_for(studies, config.generator.size_multiple)
    train_set = build_slice_set({s.name: studies[s.name] for s in train_subjects}, contrasts, canvas)
    validation_set = (build_slice_set({s.name: studies[s.name] for s in validation_subjects}, contrasts, canvas,
                                      max_slices_per_subject=args.val_slices) if validation_subjects else None)
    del studies  # the whole volumes (about 140 MB a subject) are not needed once their slices are cut
    if world.is_main:
        print(f"{len(train_set)} training slices on a {canvas[0]}x{canvas[1]} canvas: {train_set.nbytes / 2**30:.2f} GiB in memory",
              file=sys.stderr)
    start(world, device)
    interrupted = threading.Event()
    # Ctrl+C (or the Slicer module's Cancel) stops between two steps and saves a whole checkpoint;
    # under torchrun so does SIGTERM (what torchrun and SLURM send before they kill).
    stop_signals = (signal.SIGINT, signal.SIGTERM) if world.distributed else (signal.SIGINT,)
    previous = {number: signal.signal(number, lambda *_: interrupted.set()) for number in stop_signals}
    reporter = ProgressReporter("training", config.steps, lines=args.progress == "lines")
    try:
        trainer = Trainer(config, train_set, args.out, device=device, validation_set=validation_set, world=world)
        if args.resume:
            trainer.load(saved)
        elif args.init is not None:
            if not args.init.is_file():
                raise InputError(f"--init '{args.init}': no such checkpoint file")
            trainer.initialise_from(load_checkpoint(args.init))
        trainer.commands.append(("torchrun ... " if world.distributed else "") + "collagan-impute train "
                                + " ".join(shlex.quote(a) for a in argv))
        show = (lambda step, values: reporter.update(step, config.steps, g=values["g_total"], l1=values["direct_l1"])) \
            if world.is_main else None
        trainer.run(show, cancel=interrupted.is_set)
    except Cancelled:
        raise Cancelled(f"training stopped at step {trainer.step}; the checkpoint in '{args.out}' is whole: "
                        "continue with --resume") from None
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        reporter.close()
        stop()
    if not world.is_main:
        return 0
    weights = trainer.export(args.out / f"{args.name}.safetensors", {
        "description": args.description,
        "training": {
            "data": str(args.data),
            "train_subjects": [s.name for s in train_subjects],
            "validation_subjects": [s.name for s in validation_subjects],
            "train_slices": len(train_set),
            "canvas": list(canvas),
            "processes": world.size,
            "torch": torch.__version__,
        },
    })
    print(f"wrote {weights} and its card {weights.with_suffix('.json')}")
    return 0


# ----- evaluate -------------------------------------------------------------------------------------
def cmd_evaluate(argv: Sequence[str]) -> int:
    from .atomic import write_text_atomic
    from .data import discover_subjects, only_subjects
    from .evaluation import evaluate_subjects
    from .inference import select_device
    from .model_io import load_model

    p = argparse.ArgumentParser(prog="collagan-impute evaluate", description="Impute each contrast from the others and score it.")
    add_data_option(p)
    p.add_argument("--weights", type=Path)
    p.add_argument("--json", required=True, type=Path, help="where to write the metrics")
    p.add_argument("--subject", action="append", default=[], help="evaluate only these subjects (repeatable)")
    p.add_argument("--missing", action="append", default=[], help="contrasts to impute (default: each in turn)")
    p.add_argument("--bias-corrected", action="store_true",
                   help="score against each real volume after N4 bias field correction: its coil shading is absent from any imputation")
    add_device_option(p)
    add_overwrite_option(p)
    args = p.parse_args(argv)
    check_outputs([args.json], overwrite=args.overwrite)
    model = load_model(args.weights, select_device(args.device))
    subjects = only_subjects(discover_subjects(args.data, model.contrasts), args.subject, args.data)
    report = evaluate_subjects(model, subjects, args.missing or None, bias_corrected=args.bias_corrected,
                               progress=lambda m: print(m, file=sys.stderr))
    write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    for key, values in report["mean"].items():
        print(f"{display_name(key):6s} SSIM(brain) {values['ssim_brain']:.3f}  PSNR(brain) {values['psnr_brain']:.2f} dB  "
              f"NMSE(brain) {values['nmse_brain']:.3f}  SSIM(volume) {values['ssim_volume']:.3f}")
    print(f"(against {report['reference']}; {report['normalisation']})\nwrote {args.json}")
    return 0


# ----- demo -----------------------------------------------------------------------------------------
def cmd_demo(argv: Sequence[str]) -> int:
    from .demo import run_demo

    p = argparse.ArgumentParser(prog="collagan-impute demo", description="Impute a contrast of the bundled sample case.")
    p.add_argument("--missing", default="t1gd", help="contrast to impute (default t1gd)")
    p.add_argument("--out", type=Path, default=Path("collagan-demo"), help="output folder")
    p.add_argument("--weights", type=Path)
    add_device_option(p)
    args = p.parse_args(argv)
    started = time.monotonic()
    outputs = run_demo(args.missing, args.out, args.weights, args.device)
    metrics = json.loads(outputs["metrics"].read_text())
    print(f"{display_name(args.missing)} imputed in {time.monotonic() - started:.1f} s: SSIM(brain) {metrics['ssim_brain']:.3f}, "
          f"PSNR(brain) {metrics['psnr_brain']:.2f} dB, NMSE(brain) {metrics['nmse_brain']:.3f} ({metrics['normalisation']})")
    for kind, path in outputs.items():
        print(f"wrote {kind}: {path}")
    return 0


# ----- batch ----------------------------------------------------------------------------------------
def cmd_batch(argv: Sequence[str]) -> int:
    import torch

    from .batch import impute_folder, manifest_path
    from .brain_prep import PrepareOptions
    from .inference import select_device
    from .model_io import load_model

    p = argparse.ArgumentParser(prog="collagan-impute batch",
                                description="Impute a missing contrast for every study folder in a folder; a rerun skips finished studies.")
    p.add_argument("--studies", required=True, type=Path, help="a folder of study folders whose file names say the contrast")
    p.add_argument("--out", required=True, type=Path, help="output folder: <study>_<missing>_collagan.nii.gz and collagan_batch_<missing>.json")
    p.add_argument("--missing", required=True, help="the contrast to impute")
    p.add_argument("--weights", type=Path, help="model .safetensors with its .json card (default: the bundled model)")
    add_device_option(p)
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: one per GPU, else 1)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast: faster, within the tolerance README documents")
    add_views_option(p)
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
        report = impute_folder(model, args.studies, args.out, args.missing, batch_size=args.batch_size, bf16=args.bf16,
                               views=args.views, workers=workers, overwrite=args.overwrite, strict=args.strict, force=args.force,
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
def cmd_info(argv: Sequence[str]) -> int:
    from .model_card import bundled_weights
    from .model_io import load_model

    p = argparse.ArgumentParser(prog="collagan-impute info", description="Show a model card (checking the weights' sha256).")
    p.add_argument("weights", nargs="?", type=Path, default=None, help="default: the bundled model")
    args = p.parse_args(argv)
    model = load_model(args.weights or bundled_weights())
    print(json.dumps(model.card, indent=2))
    print(f"weights {model.weights_path}: sha256 verified", file=sys.stderr)
    return 0


COMMANDS = {"impute": cmd_impute, "train": cmd_train, "evaluate": cmd_evaluate, "demo": cmd_demo, "info": cmd_info,
            "batch": cmd_batch, "importance": cmd_importance, "calibrate": cmd_calibrate,
            "reading-session": cmd_reading_session}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: collagan-impute {" + ",".join(COMMANDS) + "} ...\n"
              "  impute    impute a missing contrast of one study\n"
              "  train     train a model on a manifest or a folder of subject folders\n"
              "  evaluate  impute each contrast of held-out subjects and score it\n"
              "  demo      impute a contrast of the bundled sample case\n"
              "  info      show a model card\n"
              "  batch     impute a missing contrast for every study in a folder (several processes or GPUs)\n"
              "  importance  rank the contrasts from redundant to indispensable (tumour-region quality, segmentation Dice)\n"
              "  calibrate  fit a model's error model (the 'calibrated' reliability map) and store it in its card\n"
              "  reading-session  create or score a blinded real-vs-synthetic reading session", file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else EXIT_BAD_INPUT
    try:
        return COMMANDS[argv[0]](argv[1:])
    except (InputError, ModelError) as error:
        print(f"collagan-impute: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Cancelled as cancelled:
        print(f"collagan-impute: cancelled: {cancelled}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("collagan-impute: cancelled; no partial output was left", file=sys.stderr)
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
