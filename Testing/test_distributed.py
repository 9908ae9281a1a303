"""DistributedDataParallel training on the CPU (gloo, two processes): the ranks stay in step, sample
disjoint slices, and a resumed two-process run repeats the uninterrupted one."""

import socket

import pytest
import torch
import torch.multiprocessing as mp
from CollaGANImputeLib.core.errors import InputError
from CollaGANImputeLib.model.networks import DiscriminatorConfig, GeneratorConfig
from CollaGANImputeLib.preparation.data import SliceSet
from CollaGANImputeLib.training.config import TrainConfig
from CollaGANImputeLib.training.distributed import ShardSampler, World, start, stop
from CollaGANImputeLib.training.trainer import Trainer

SLICES = 10


def tiny_slices() -> SliceSet:
    """Ten 32x32 four-contrast slices; what they show does not matter here, only who trains on which."""
    images = torch.rand(SLICES, 4, 32, 32, generator=torch.Generator().manual_seed(0)) * 2
    return SliceSet(images, images.max(dim=1).values > 0.2, ["s"], torch.zeros(SLICES, dtype=torch.long).numpy())


def config(steps: int) -> TrainConfig:
    return TrainConfig(generator=GeneratorConfig(4, branch_width=2, decoder_width=4, depth=2),
                       discriminator=DiscriminatorConfig(4, width=2), steps=steps, batch_size=2, lr=1e-3,
                       lr_discriminator=1e-3, validate_every=1000, checkpoint_every=1000)


def rank_main(rank: int, folder: str, port: int) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    world = World(rank, 2, 0)
    start(world, torch.device("cpu"))
    try:
        slices = tiny_slices()
        straight = Trainer(config(4), slices, f"{folder}/straight", world=world)
        draws = []
        draw = straight.sampler.draw
        straight.sampler.draw = lambda batch, generator: draws.append(draw(batch, generator)) or draws[-1]
        losses = [straight.train_step() for _ in range(4)]
        weights = {f"g.{k}": v for k, v in straight.generator.state_dict().items()}
        weights.update({f"d.{k}": v for k, v in straight.discriminator.state_dict().items()})

        Trainer(config(2), slices, f"{folder}/part", world=world).run()  # checkpoints at step 2
        resumed = Trainer(config(4), slices, f"{folder}/part", world=world)
        resumed.load()
        again = [resumed.train_step() for _ in range(2)]
        torch.save({"weights": weights, "draws": torch.cat(draws), "shard": straight.sampler.indices,
                    "losses": losses, "again": again}, f"{folder}/rank{rank}.pt")
    finally:
        stop()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(rank_main, args=(str(folder), port), nprocs=2, join=True)
    return folder, [torch.load(folder / f"rank{r}.pt") for r in range(2)]


def test_ranks_hold_identical_weights_after_ddp_steps(two_ranks):
    _, (first, second) = two_ranks
    assert first["weights"].keys() == second["weights"].keys()
    for key, value in first["weights"].items():
        assert torch.equal(value, second["weights"][key]), key
    assert first["losses"] != second["losses"]  # they trained on different slices, yet agree on the weights


def test_sampler_gives_the_ranks_disjoint_slices(two_ranks):
    _, (first, second) = two_ranks
    shards = [set(first["shard"].tolist()), set(second["shard"].tolist())]
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(SLICES))
    assert set(first["draws"].tolist()) <= shards[0] and set(second["draws"].tolist()) <= shards[1]
    assert ShardSampler(SLICES).indices.tolist() == list(range(SLICES))  # one process: every slice


def test_two_process_resume_repeats_the_uninterrupted_run(two_ranks):
    folder, ranks = two_ranks
    for result in ranks:
        for want, have in zip(result["losses"][2:], result["again"]):
            for key in want:
                assert have[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key
    # Rank 0 alone wrote the log; the checkpoint holds both ranks' RNG states and refuses another world size.
    assert [line.split(",")[0] for line in (folder / "part" / "train_log.csv").read_text().splitlines()[1:]] == ["1", "2"]
    with pytest.raises(InputError, match="made by 2 training process"):
        Trainer(config(4), tiny_slices(), folder / "part").load()
