"""`collagan-impute train`: every setting of a run as a flag, resume, and the exported model."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from ..core.contrasts import DEFAULT_CONTRASTS
from ..core.errors import Cancelled, InputError, ModelError
from ..core.orientations import PLANE_ORDERS
from ..core.progress import ProgressReporter
from .options import (
    add_data_option,
    add_device_option,
    add_progress_option,
)


def contrast_keys(text: str) -> list[str]:
    """The contrast keys of a comma-separated option (--contrasts, --targets), blanks dropped."""
    return [key.strip() for key in text.split(",") if key.strip()]


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="collagan-impute train", description="Train CollaGAN on a manifest or a folder of subject folders.")
    add_data_option(p)
    p.add_argument("--out", required=True, type=Path, help="run folder: checkpoint, logs, exported model")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly where its checkpoint stopped (its saved settings apply; only --steps may change)")
    p.add_argument("--steps", type=int, help="train until this step (default 1000; with --resume, the run's own target unless given)")
    p.add_argument("--contrasts", default=",".join(DEFAULT_CONTRASTS), help="comma-separated contrast keys, in model order")
    p.add_argument("--validation", action="append", default=[], metavar="SUBJECT", help="subject held out for validation (repeatable)")
    p.add_argument("--subject", dest="subjects", action="append", default=[], metavar="SUBJECT",
                   help="train on this subject (repeatable; default: every subject not held out)")
    p.add_argument("--branch-width", type=int, default=16)
    p.add_argument("--decoder-width", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--unit", default="ccnl", choices=("ccnl", "plain"))
    p.add_argument("--no-ccam", action="store_true")
    p.add_argument("--context-slices", type=int, default=0, metavar="K",
                   help="2.5-D input: each branch also reads the K slices on either side of the one synthesised (default 0: 2-D)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--crop", type=int, default=0, help="train on random CROP x CROP windows of the brain-centred canvas (0: whole canvas)")
    p.add_argument("--brain-box", action="store_true",
                   help="train on each batch cut to its brain's box, as imputation cuts each batch of slices (instead of --crop)")
    p.add_argument("--planes", type=int, choices=(1, len(PLANE_ORDERS)),
                   help="1: axial slices; 3: axial, coronal and sagittal ones, the orientations the default imputation averages "
                        "(default: a slice cache's own, else 1)")
    p.add_argument("--optimizer", default="adam", choices=("adam", "adamw"), help="adam (METHOD.md) or adamw (decoupled weight decay)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--lr-discriminator", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--decay-every", type=int, default=400)
    p.add_argument("--decay-rate", type=float, default=0.99, help="the learning rate is multiplied by this every --decay-every steps")
    from ..training.config import WEIGHTS_DTYPES
    from ..training.losses import LossWeights

    defaults = LossWeights()
    p.add_argument("--cycle-l1", type=float, default=defaults.cycle_l1, help="weight of the multiple-cycle L1 (METHOD.md 10)")
    p.add_argument("--cycle-ssim", type=float, default=defaults.cycle_ssim, help="weight of the multiple-cycle SSIM loss (METHOD.md 1)")
    p.add_argument("--adversarial", type=float, default=defaults.adversarial,
                   help="weight of the generator's LSGAN and classification terms (METHOD.md 1); 0 with zero cycle weights: "
                        "the fast direct phase, one generator pass a step and no discriminator")
    p.add_argument("--direct-l1", type=float, default=0.0, help="weight of the direct L1 (public MRI code 0, CVPR code 10)")
    p.add_argument("--direct-ssim", type=float, default=0.0, help="weight of the SSIM loss on the direct output")
    p.add_argument("--direct-quantile", type=float, default=0.0,
                   help="weight of the distance between the direct output's and the real image's sorted intensities")
    p.add_argument("--direct-gradient", type=float, default=0.0,
                   help="weight of the difference between the direct output's and the real image's finite differences (edges)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--rotate", type=float, default=0.0, metavar="DEG",
                   help="augment with a random in-plane rotation of up to DEG degrees either way (default 0: none)")
    p.add_argument("--input-gamma", type=float, default=0.0, metavar="G",
                   help="bend each input contrast by a random gamma, log gamma uniform in [-G, G] (default 0: none); targets stay real")
    p.add_argument("--bias-correct", action="store_true",
                   help="train on studies freed of their coil shading (N4); the model then corrects its inputs the same way")
    p.add_argument("--brasyn-scale", action="store_true",
                   help="train in the metrics' intensity space (each contrast clipped to its brain's 0.5-99.5 percentiles, scaled "
                        "to [0, 1]) instead of brain standard deviations; the model then scales its inputs the same way")
    p.add_argument("--missing-min", type=int, default=1, help="fewest contrasts absent per sample (default 1)")
    p.add_argument("--missing-max", type=int, default=1,
                   help="most contrasts absent per sample: 1 is CollaGAN, N-1 any subset (MM-GAN), with --missing-min N-1 a single-input model")
    p.add_argument("--targets", default="", metavar="LIST",
                   help="comma-separated contrasts trained as targets (default: every one); a companion for some contrasts "
                        "spends no steps on the others")
    p.add_argument("--curriculum-steps", type=int, default=0,
                   help="grow the most absent contrasts from --missing-min to --missing-max over this many steps")
    p.add_argument("--init", type=Path, metavar="CHECKPOINT",
                   help="start from the networks of another run's checkpoint.safetensors, or from a model's weights (its card "
                        "beside them; the discriminator starts afresh): fine-tuning, optimisers start afresh")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="validate and export a moving average of the generator's weights with this decay per step (say 0.999; 0: off)")
    p.add_argument("--seed", type=int, default=0)
    add_device_option(p)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast: on CUDA, or on a CPU with bf16 arithmetic (AMX, AVX-512 bf16)")
    p.add_argument("--validate-every", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--val-slices", type=int, default=16, help="evenly spaced brain slices per validation subject")
    p.add_argument("--weights-dtype", default="float32", choices=WEIGHTS_DTYPES,
                   help="of the exported weights: float16 halves the file (inference computes in float32 all the same)")
    p.add_argument("--name", default="model", help="exported weights: OUT/NAME.safetensors and OUT/NAME.json")
    p.add_argument("--description", default="", help="free text for the model card")
    add_progress_option(p)
    return p


def _initial_state(path: Path) -> dict:
    """--init: a training checkpoint, or else a released model's weights with their card (checked as for imputing)."""
    from ..model.checkpoint import load_checkpoint
    from ..model.weights import initial_state, load_model

    try:
        return load_checkpoint(path)
    except ModelError:
        return initial_state(load_model(path))


def cmd_train(argv: Sequence[str]) -> int:
    import torch

    from ..inference.synthesis import select_device
    from ..model.checkpoint import load_checkpoint
    from ..model.networks import DiscriminatorConfig, GeneratorConfig
    from ..preparation.slice_cache import is_slice_cache, slice_cache_planes
    from ..training.config import CHECKPOINT_NAME, TrainConfig
    from ..training.distributed import start, stop, world_from_env
    from ..training.losses import LossWeights
    from ..training.trainer import Trainer

    args = _train_parser().parse_args(argv)
    # Under torchrun every process runs this command; rank 0 alone prints, writes and exports.
    world = world_from_env()
    device = select_device(args.device)
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # the crops' shape is fixed: let cuDNN choose its fastest kernels
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
        contrasts = contrast_keys(args.contrasts)
        n = len(contrasts)
        if not 1 <= args.missing_min <= args.missing_max <= n - 1:
            raise InputError(f"--missing-min {args.missing_min} and --missing-max {args.missing_max}: need "
                             f"1 <= min <= max <= {n - 1} for {n} contrasts")
        try:
            generator = GeneratorConfig(n, args.branch_width, args.decoder_width, args.depth, args.unit, not args.no_ccam, args.context_slices)
        except ValueError as error:  # widths, depth or context out of range
            raise InputError(f"the generator asked for cannot be built: {error}") from None
        config = TrainConfig(
            contrasts=contrasts, validation_subjects=args.validation, subjects=args.subjects, generator=generator,
            discriminator=DiscriminatorConfig(n),
            weights=LossWeights(cycle_l1=args.cycle_l1, cycle_ssim=args.cycle_ssim, adversarial=args.adversarial,
                                generator_classification=args.adversarial, direct_l1=args.direct_l1, direct_ssim=args.direct_ssim,
                                direct_quantile=args.direct_quantile, direct_gradient=args.direct_gradient),
            steps=args.steps if args.steps is not None else TrainConfig.steps, batch_size=args.batch_size, lr=args.lr,
            lr_discriminator=args.lr_discriminator, weight_decay=args.weight_decay, decay_rate=args.decay_rate, decay_every=args.decay_every,
            augment=not args.no_augment, rotation=args.rotate, input_gamma=args.input_gamma, crop=args.crop, brain_box=args.brain_box,
            optimizer=args.optimizer,
            planes=args.planes or (slice_cache_planes(args.data) if is_slice_cache(args.data) else 1),
            bias_correct=args.bias_correct, brasyn_scale=args.brasyn_scale,
            missing_min=args.missing_min, missing_max=args.missing_max,
            targets=contrast_keys(args.targets), curriculum_steps=args.curriculum_steps, ema_decay=args.ema,
            seed=args.seed, bf16=args.bf16, validate_every=args.validate_every, checkpoint_every=args.checkpoint_every,
            weights_dtype=args.weights_dtype,
        )
    train_set, validation_set, canvas, data_fields, percentiles = _slice_sets(args, config, world)
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
            trainer.initialise_from(_initial_state(args.init))
        reporter.start = trainer.step
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
            **data_fields,
            "train_slices": len(train_set),
            "canvas": list(canvas),
            "processes": world.size,
            "torch": torch.__version__,
        },
        **(_back_to_sd(config, train_set.subjects, percentiles) if config.brasyn_scale else {}),
    })
    print(f"wrote {weights} and its card {weights.with_suffix('.json')}")
    return 0


def _back_to_sd(config, train_subjects: Sequence[str], percentiles: dict) -> dict:
    """A BraSyn-scaled model's card fields that deliver its output in brain SDs like every other model's, fitted on the
    training subjects; none (its output stays in [0, 1], as its card then says) from a slice cache made before
    caches kept the percentiles, or for a contrast no training subject has."""
    from ..core.contrasts import display_name
    from ..model.weights import back_to_sd_card_fields

    if not all(name in percentiles for name in train_subjects):
        print("warning: the slice cache holds no percentiles in brain SDs (made by an older version), so this model's "
              "output stays in the BraSyn scaling [0, 1]; `benchmarks/normalisation_spread.py --write-card` adds the "
              "way back, or make the cache again", file=sys.stderr)
        return {}
    unseen = [display_name(key) for key in config.contrasts if not any(key in percentiles[name] for name in train_subjects)]
    if unseen:
        print(f"warning: no training subject has {', '.join(unseen)}, so nothing says where its brain percentiles lie; "
              "this model's output stays in the BraSyn scaling [0, 1]", file=sys.stderr)
        return {}
    return back_to_sd_card_fields({name: percentiles[name] for name in train_subjects}, config.contrasts,
                                  "collagan-impute train: the training subjects' brain percentiles before the BraSyn scaling")


def _studies(data: Path, contrasts: Sequence[str], *, bias_correct: bool, brasyn_scale: bool, lines: bool) -> tuple[dict, dict]:
    """Every subject of `data` read, normalised and (as the run asks) bias-corrected or BraSyn-scaled, with progress;
    and, when BraSyn-scaled, each subject's percentiles in brain SDs before the scaling (brasyn_scale.sd_percentiles),
    from which the card's way back to brain SDs is fitted."""
    from ..preparation.bias_field import corrected_study
    from ..preparation.brasyn_scale import brasyn_scaled_study, sd_percentiles
    from ..preparation.data import discover_subjects, prepare_subject

    subjects = discover_subjects(data, contrasts, incomplete=True)
    loading = ProgressReporter("loading subjects", len(subjects), lines=lines, unit="subject")
    studies, percentiles = {}, {}
    for number, subject in enumerate(subjects, 1):
        study = prepare_subject(subject, contrasts)
        study = corrected_study(study) if bias_correct else study
        if brasyn_scale:
            percentiles[subject.name] = sd_percentiles(study)
            study = brasyn_scaled_study(study)
        studies[subject.name] = study
        loading.update(number)
    loading.close()
    return studies, percentiles


def _slice_sets(args: argparse.Namespace, config, world) -> tuple:
    """The training and validation slices, the canvas, what the card says of the data and the subjects' percentiles in
    brain SDs (`_studies`; empty unless BraSyn-scaled): cut from the studies, or read from a slice cache
    (`collagan-impute cache`) when --data is one."""
    from ..preparation.data import build_slice_set, canvas_for
    from ..preparation.slice_cache import is_slice_cache, load_slice_cache

    if is_slice_cache(args.data):
        if config.generator.context:
            raise InputError(f"slice cache '{args.data}' holds single slices; a 2.5-D run (--context-slices) reads the studies")
        every, header = load_slice_cache(args.data, config.contrasts, {"bias_correct": config.bias_correct,
                                                                      "brasyn_scale": config.brasyn_scale}, config.planes)
        canvas = tuple(header["canvas"])
        if any(size % config.generator.size_multiple for size in canvas):
            raise InputError(f"slice cache '{args.data}': its {canvas[0]}x{canvas[1]} canvas does not fit a generator of depth "
                             f"{config.generator.depth} (multiples of {config.generator.size_multiple}); make a cache for it")
        fields = {"data": header["source"], "slice_cache": {"file": str(args.data), "stride": header["stride"]}}
        percentiles = header.get("sd_percentiles", {})
    else:
        studies, percentiles = _studies(args.data, config.contrasts, bias_correct=config.bias_correct, brasyn_scale=config.brasyn_scale,
                           lines=args.progress == "lines")
        canvas = canvas_for(studies, config.generator.size_multiple, config.planes)
        every = build_slice_set(studies, config.contrasts, canvas, context=config.generator.context, planes=config.planes)
        del studies  # the whole volumes (about 140 MB a subject) are not needed once their slices are cut
        fields = {"data": str(args.data)}
    train_set, validation_set = every.split(config.validation_subjects, config.subjects, args.val_slices)
    if world.is_main:
        print(f"training on {', '.join(train_set.subjects)}; validating on "
              f"{', '.join(validation_set.subjects) if validation_set else 'none'}"
              + (f"; {world.size} processes" if world.distributed else ""), file=sys.stderr)
    fields.update(train_subjects=train_set.subjects, validation_subjects=validation_set.subjects if validation_set else [])
    return train_set, validation_set, canvas, fields, percentiles


def cmd_cache(argv: Sequence[str]) -> int:
    """`collagan-impute cache`: every subject's training slices, prepared once, in one compact file."""
    from ..model.networks import GeneratorConfig
    from ..preparation.data import build_slice_set, canvas_for
    from ..preparation.slice_cache import save_slice_cache

    p = argparse.ArgumentParser(prog="collagan-impute cache", description=(
        "Prepare every subject's training slices once and write them to a compact .npz that `train --data` reads, "
        "for runs on another machine or many runs on one."))
    add_data_option(p)
    p.add_argument("--out", required=True, type=Path, help="the cache file to write (.npz)")
    p.add_argument("--contrasts", default=",".join(DEFAULT_CONTRASTS), help="comma-separated contrast keys, in model order")
    p.add_argument("--stride", type=int, default=1, help="keep every STRIDE-th brain slice of each subject (default 1: all)")
    p.add_argument("--planes", type=int, default=1, choices=(1, len(PLANE_ORDERS)),
                   help="1: axial slices (default); 3: axial, coronal and sagittal ones, the orientations the default imputation averages")
    p.add_argument("--bias-correct", action="store_true", help="slices of N4-corrected studies, for `train --bias-correct`")
    p.add_argument("--brasyn-scale", action="store_true", help="slices in the metrics' intensity space, for `train --brasyn-scale`")
    add_progress_option(p)
    args = p.parse_args(argv)
    if args.out.suffix != ".npz":
        raise InputError(f"--out '{args.out}': a slice cache is a .npz file")
    if args.stride < 1:
        raise InputError(f"--stride {args.stride}: keep at least every slice (1) or every n-th (n > 1)")
    contrasts = contrast_keys(args.contrasts)
    studies, percentiles = _studies(args.data, contrasts, bias_correct=args.bias_correct, brasyn_scale=args.brasyn_scale,
                                    lines=args.progress == "lines")
    canvas = canvas_for(studies, GeneratorConfig(len(contrasts)).size_multiple, args.planes)
    slices = build_slice_set(studies, contrasts, canvas, stride=args.stride, planes=args.planes)
    save_slice_cache(args.out, slices, contrasts, {"canvas": list(canvas), "stride": args.stride, "planes": args.planes, "source": str(args.data),
                                                    "bias_correct": args.bias_correct, "brasyn_scale": args.brasyn_scale,
                                                    **({"sd_percentiles": percentiles} if args.brasyn_scale else {})})
    print(f"wrote {args.out}: {len(slices)} slices of {len(studies)} subjects on a {canvas[0]}x{canvas[1]} canvas, "
          f"{args.out.stat().st_size / 2**20:.1f} MiB")
    return 0

# ----- evaluate -------------------------------------------------------------------------------------
