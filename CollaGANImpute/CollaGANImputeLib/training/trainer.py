"""Training CollaGAN as METHOD.md describes, with exact resume.

One step: draw a batch of slices and a random target contrast per sample, synthesise it, reconstruct
every other contrast from a set in which the fake replaces the real (multiple cycle consistency), and
update G; update D every second step. Every random draw comes from one seeded generator whose state,
like the global RNG used by dropout, is saved in the checkpoint, so a resumed run repeats the steps an
uninterrupted run would have taken.

With `missing_max` > 1 the same generator learns every pattern of absent inputs (MM-GAN, METHOD.md):
each sample zero-fills a random set of 1..missing_max contrasts, one of which is the target, and a
curriculum widens the set from `missing_min` to `missing_max` over `curriculum_steps`.

With `ema_decay` > 0 a moving average of the generator's weights follows the trained ones; validation and
the exported model use the average, which is steadier than the weights of any single step of a small,
noisy batch.

Under torchrun each process (rank) trains on its own disjoint shard of the slices with its own
generator, DistributedDataParallel averages the gradients, rank 0 alone validates and writes, and the
checkpoint holds every rank's RNG states so that a resume with the same number of processes is exact.
"""

from __future__ import annotations

import copy
import csv
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..core.errors import Cancelled, InputError
from ..core.metrics import NORMALISATION, image_metrics
from ..inference.synthesis import one_hot
from ..io.atomic import atomic_path, write_text_atomic
from ..model.checkpoint import load_checkpoint, save_checkpoint
from ..model.networks import Discriminator, Generator
from ..model.weights import save_model
from ..preparation.data import SliceSet, jitter_contrasts
from .config import CHECKPOINT_NAME, TrainConfig
from .distributed import ShardSampler, World, any_rank, gather_to_all, rank_seed
from .losses import (
    classification,
    cycle_inputs,
    direct_losses,
    lsgan_fake,
    lsgan_real,
    multiple_cycle_l1,
    multiple_cycle_ssim,
)
from .missing import check_targets, draw_missing
from .windows import training_windows


class Trainer:
    def __init__(self, config: TrainConfig, train_set: SliceSet, out_dir: str | Path, *, device: torch.device | str = "cpu",
                 validation_set: SliceSet | None = None, world: World = World()) -> None:
        n = len(config.contrasts)
        if config.generator.num_contrasts != n or config.discriminator.num_contrasts != n:
            raise InputError(f"the networks must be built for {n} contrasts ({', '.join(config.contrasts)})")
        if train_set.context != config.generator.context:
            raise InputError(f"the slices hold {train_set.context} neighbours a side; the generator reads {config.generator.context}")
        self.config, self.train_set, self.validation_set = config, train_set.to(device), validation_set
        self.out_dir, self.device, self.world = Path(out_dir), torch.device(device), world
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.rng = torch.Generator().manual_seed(rank_seed(config.seed, world))
        self.sampler = ShardSampler(len(train_set), world)
        self.generator = Generator(config.generator).to(self.device)
        if not 0.0 <= config.ema_decay < 1.0:
            raise InputError(f"the moving average's decay must be in [0, 1), not {config.ema_decay}")
        # The weights validated and exported: the moving average where there is one.
        self.averaged = copy.deepcopy(self.generator).requires_grad_(False) if config.ema_decay else None
        self.discriminator = Discriminator(config.discriminator).to(self.device)
        if world.distributed:
            torch.manual_seed(rank_seed(config.seed, world))  # dropout masks differ between ranks
        # What the steps call: the networks themselves, or their DDP wrappers that average gradients.
        self.generator_step, self.discriminator_step = self._parallel(self.generator), self._parallel(self.discriminator)
        betas = (config.beta1, 0.999)
        if config.optimizer not in ("adam", "adamw"):
            raise InputError(f"unknown optimizer {config.optimizer!r}; expected 'adam' or 'adamw'")
        if config.crop and (config.crop % config.generator.size_multiple or config.crop > min(train_set.images.shape[-2:])):
            raise InputError(f"crop {config.crop} must be a multiple of {config.generator.size_multiple} and fit the "
                             f"training canvas {tuple(train_set.images.shape[-2:])}")
        check_targets(config, train_set)
        if config.crop and config.brain_box:
            raise InputError("train either on random windows (crop) or on the brain's box (brain_box), not both")
        optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.opt_g = optimizer(self.generator.parameters(), lr=config.lr, betas=betas, weight_decay=config.weight_decay)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_discriminator, betas=betas)
        decay = lambda step: config.decay_rate ** (step // config.decay_every)  # noqa: E731 - staircase decay
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict] = []
        self.commands: list[str] = []  # every command line that trained this run, first to last
        self.initialised_from: dict = {}  # the run whose networks this one started from (commands, steps, time)

    def _parallel(self, module: torch.nn.Module) -> torch.nn.Module:
        if not self.world.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    # ----- one step -----------------------------------------------------------------------------
    def _autocast(self):
        """bf16 autocast of the networks' passes where asked, on CUDA or a CPU with bf16 arithmetic; losses in float32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    def train_step(self) -> dict[str, float]:
        cfg, n, w = self.config, len(self.config.contrasts), self.config.weights
        index = self.sampler.draw(cfg.batch_size, self.rng)
        real = training_windows(self.train_set, index, cfg, self.rng)
        present = self.train_set.present[index]
        target, absent = self.draw_missing(cfg.batch_size, present)
        real, target, absent, present = (t.to(self.device) for t in (real, target, absent, present))
        batch = real.shape[0]
        t_hot = torch.nn.functional.one_hot(target, n).float()

        self.generator.train()
        self.discriminator.train()
        self.discriminator.requires_grad_(False)
        planes, centre = cfg.generator.planes, real[:, cfg.generator.centre]  # centre: the slices synthesised, (B, N, H, W)
        inputs = jitter_contrasts(real, cfg.input_gamma, self.rng, planes) if cfg.input_gamma else real  # targets stay real
        with self._autocast():
            fake = self.generator_step(inputs * (1 - absent.repeat_interleave(planes, 1)[:, :, None, None]), t_hot)
        target_real = centre.gather(1, target.view(batch, 1, 1, 1).expand(-1, 1, *real.shape[-2:]))
        losses = direct_losses(fake.float(), target_real, w)
        generated = fake
        if w.uses_cycles:
            with self._autocast():
                cycle_in, others, cycle_real = cycle_inputs(real, fake, target, absent, planes)
                cycles = self.generator_step(cycle_in, torch.nn.functional.one_hot(others, n).float())
            # Only where the subject has the contrast is there a real image to reconstruct.
            valid = present.T.gather(0, (others.view(n - 1, batch))).flatten()
            losses["cycle_l1"] = multiple_cycle_l1(cycles.float(), cycle_real, n - 1, valid)
            losses["cycle_ssim"] = multiple_cycle_ssim(cycles.float(), cycle_real, n - 1, valid=valid)
            generated = torch.cat([fake, cycles])
        if w.uses_discriminator:
            with self._autocast():
                realness, logits = self.discriminator(generated)
            losses["g_adversarial"] = lsgan_real(realness[:batch].float())
            losses["g_classification"] = classification(logits[:batch].float(), target)
            if w.uses_cycles:  # each of the N-1 reconstructions counts as much as the fake
                losses["g_adversarial"] = losses["g_adversarial"] + (n - 1) * lsgan_real(realness[batch:].float())
                losses["g_classification"] = losses["g_classification"] + (n - 1) * classification(logits[batch:].float(), others)
        g_loss = sum(w.weight_of(name) * value for name, value in losses.items())
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.sched_g.step()
        self._update_average()
        self.discriminator.requires_grad_(True)

        if w.uses_discriminator and self.step % cfg.discriminator_every == 0:
            # Real images of the contrasts the subjects have; an absent contrast is a blank, not a real image.
            all_real = centre.reshape(batch * n, 1, *real.shape[-2:])[present.flatten()]
            classes = torch.arange(n, device=self.device).repeat(batch)[present.flatten()]
            with self._autocast():
                real_realness, real_logits = self.discriminator_step(all_real)
                fake_realness_d, _ = self.discriminator_step(generated.detach())
            losses["d_adversarial"] = lsgan_real(real_realness.float()) + lsgan_fake(fake_realness_d.float())
            # The classifier learns from real images only.
            losses["d_classification"] = classification(real_logits.float(), classes)
            d_loss = w.discriminator * (losses["d_adversarial"] + losses["d_classification"])
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
        if w.uses_discriminator:
            self.sched_d.step()
        self.step += 1
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["g_total"] = float(g_loss.detach())
        return values

    @property
    def exported(self) -> Generator:
        """The generator that validation scores and `export` writes."""
        return self.generator if self.averaged is None else self.averaged

    @torch.no_grad()
    def _update_average(self) -> None:
        """Move the average towards the weights; early on it forgets faster (decay (1+t)/(10+t) until that
        reaches ema_decay), so that it does not drag the random initial weights along."""
        if self.averaged is None:
            return
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        for average, current in zip(self.averaged.parameters(), self.generator.parameters()):
            average.lerp_(current, 1.0 - decay)
        for average, current in zip(self.averaged.buffers(), self.generator.buffers()):
            average.copy_(current)

    def draw_missing(self, batch: int, present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample the target contrast and the (B, N) mask of zero-filled inputs, target included (`missing.draw_missing`)."""
        return draw_missing(self.config, self.step, batch, self.rng, present)

    # ----- validation ---------------------------------------------------------------------------
    def validate(self) -> list[dict]:
        """SSIM, PSNR, NMSE per validation subject and contrast on its held-out slices (2-D SSIM)."""
        if self.validation_set is None:
            return []
        rows, data = [], self.validation_set
        n, planes = len(self.config.contrasts), self.config.generator.planes
        generator = self.exported.eval()
        with torch.inference_mode():
            for number, subject in enumerate(data.subjects):
                chosen = np.nonzero(data.subject_index == number)[0]
                images, masks = data.images[chosen].float(), data.masks[chosen].numpy()
                real = images[:, self.config.generator.centre].numpy()  # each contrast's slices scored against
                for k, key in enumerate(self.config.contrasts):
                    if not data.present[chosen[0], k]:
                        continue  # the subject lacks this contrast: nothing to score against
                    fakes = []
                    for start in range(0, len(chosen), 8):
                        part = images[start : start + 8].to(self.device)
                        hot = one_hot(k, n, part.shape[0], self.device)
                        fakes.append(generator(part * (1 - hot.repeat_interleave(planes, 1)[:, :, None, None]), hot).float().cpu())
                    fake = torch.cat(fakes)[:, 0].numpy() * masks
                    scores = image_metrics(real[:, k], fake, masks, slices_2d=True)
                    rows.append({"step": self.step, "subject": subject, "contrast": key,
                                 **{m: scores[m] for m in ("ssim_brain", "psnr_brain", "nmse_brain", "ssim_volume")}})
        self._append_csv("validation.csv", rows)
        return rows

    # ----- running, saving, resuming ------------------------------------------------------------
    def run(self, progress: Callable[[int, dict], None] | None = None, cancel: Callable[[], bool] | None = None) -> None:
        """Train until `config.steps`, checkpointing regularly and at the end (and on cancel).

        With several ranks every rank calls this; a cancel on any rank stops all at the same step.
        """
        cfg = self.config
        started = time.monotonic()
        elapsed_before = self.elapsed
        try:
            while self.step < cfg.steps:
                if any_rank(cancel is not None and cancel(), self.world, self.device):
                    raise Cancelled(f"training cancelled at step {self.step}")
                values = self.train_step()
                self.elapsed = elapsed_before + time.monotonic() - started
                self.history.append({"step": self.step, **values})
                if self.world.is_main and (self.step % cfg.validate_every == 0 or self.step == cfg.steps):
                    self.validate()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save()
                if progress is not None:
                    progress(self.step, values)
        except Cancelled:
            self.save()
            raise

    def _rng_states(self) -> dict[str, torch.Tensor]:
        states = {"rng": self.rng.get_state(), "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return states

    def _set_rng_states(self, states: dict[str, torch.Tensor]) -> None:
        self.rng.set_state(states["rng"])
        torch.set_rng_state(states["torch_rng"])
        if "cuda_rng" in states and self.device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda_rng"], self.device)

    def save(self) -> None:
        """Every rank calls this (it gathers their RNG states); rank 0 writes."""
        rank_states = gather_to_all(self._rng_states(), self.world)
        if not self.world.is_main:
            self.history = []
            return
        self._append_csv("train_log.csv", self.history)
        self.history = []
        state = {
            "config": self.config.to_dict(),
            "step": self.step,
            "elapsed_s": self.elapsed,
            "commands": self.commands,
            "initialised_from": self.initialised_from,
            "generator": self.generator.state_dict(),
            **({"averaged_generator": self.averaged.state_dict()} if self.averaged is not None else {}),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            **rank_states[0],
        }
        if self.world.distributed:
            state.update(world_size=self.world.size, rank_rng=rank_states)
        save_checkpoint(state, self.out_dir / CHECKPOINT_NAME)

    def initialise_from(self, state: dict) -> None:
        """Start from another run's networks (fine-tuning, e.g. a one-missing model learning any subset) or a
        released model's generator; the optimisers, schedules and step start afresh. The card keeps that history."""
        try:
            self.generator.load_state_dict(state["generator"])
            if "discriminator" in state:  # a released model's weights (weights.initial_state) hold none: it starts afresh
                self.discriminator.load_state_dict(state["discriminator"])
            if self.averaged is not None:  # the average starts from the weights it fine-tunes
                self.averaged.load_state_dict(state["generator"])
        except (KeyError, RuntimeError) as error:
            raise InputError(f"the initial checkpoint does not fit this run's networks: {str(error).splitlines()[0]}") from None
        self.initialised_from = {"commands": list(state.get("commands", [])), "steps": int(state["step"]),
                                 "time_s": round(float(state["elapsed_s"]), 1), "config": state["config"],
                                 "initialised_from": state.get("initialised_from", {})}
        if "weights" in state:
            self.initialised_from["weights"] = state["weights"]

    def load(self, state: dict | None = None) -> None:
        """Continue from a checkpoint: `state` as load_checkpoint read it, or the one in the run folder."""
        if state is None:
            state = load_checkpoint(self.out_dir / CHECKPOINT_NAME)
        saved = TrainConfig.from_dict(state["config"])
        saved.steps = self.config.steps
        if saved != self.config:
            raise InputError("the checkpoint was made with another configuration than this run asks for")
        processes = int(state.get("world_size", 1))
        if processes != self.world.size:
            raise InputError(f"the checkpoint was made by {processes} training process(es); resume it with as many "
                             f"(this run has {self.world.size}), so that every process continues its own random draws")
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.averaged is not None:
            self.averaged.load_state_dict(state["averaged_generator"])
        for name in ("opt_g", "opt_d", "sched_g", "sched_d"):
            getattr(self, name).load_state_dict(state[name])
        self._set_rng_states(state["rank_rng"][self.world.rank] if self.world.distributed else state)
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
        self.commands = list(state.get("commands", []))
        self.initialised_from = dict(state.get("initialised_from", {}))

    def _append_csv(self, name: str, rows: list[dict]) -> None:
        """Append rows; on resume, rows past the checkpoint's step are dropped first so none repeat."""
        if not rows:
            return
        path = self.out_dir / name
        fields = sorted({key for row in rows for key in row}, key=lambda k: (k != "step", k))
        kept: list[dict] = []
        if path.exists():
            with open(path, newline="", encoding="utf-8") as handle:
                kept = [r for r in csv.DictReader(handle) if int(r["step"]) < rows[0]["step"]]
            fields = list(dict.fromkeys([*(kept[0].keys() if kept else []), *fields]))
        with atomic_path(path) as temp, open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept + rows)

    def export(self, weights: str | Path, card_fields: dict) -> Path:
        """The generator as safetensors plus its card, with the last validation's means per contrast."""
        card_fields = dict(card_fields)
        card_fields["missing_inputs"] = {"min": self.config.missing_min, "max": self.config.missing_max}
        card_fields.setdefault("training", {}).update(
            {"commands": self.commands, "initialised_from": self.initialised_from, "config": self.config.to_dict(), "steps": self.step,
             "time_s": round(self.elapsed, 1), "device": str(self.device)}
        )
        summary = self.validation_summary()
        if summary:
            card_fields["metrics"] = {"validation": summary, "normalisation": NORMALISATION}
        return save_model(self.exported, self.config.contrasts, weights, card_fields, bias_corrected=self.config.bias_correct,
                          brasyn_scaled=self.config.brasyn_scale, dtype=getattr(torch, self.config.weights_dtype))

    def validation_summary(self) -> dict:
        path = self.out_dir / "validation.csv"
        if not path.exists():
            return {}
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        last = max(int(r["step"]) for r in rows)
        summary: dict = {"step": last}
        for key in self.config.contrasts:
            chosen = [r for r in rows if int(r["step"]) == last and r["contrast"] == key]
            summary[key] = {m: round(float(np.mean([float(r[m]) for r in chosen])), 4)
                            for m in ("ssim_brain", "psnr_brain", "nmse_brain", "ssim_volume")}
        write_text_atomic(self.out_dir / "validation.json", json.dumps(summary, indent=2) + "\n")
        return summary
