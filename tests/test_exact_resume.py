"""Resume mid-epoch ends with the uninterrupted weights, for models that draw noise from every RNG.

The trap: building a DataLoader iterator draws a number from torch's global generator unless the
loader has its own (engine/loader_rng.py); a resumed run's skip_first_batches loader drew it again.
"""

import copy
import os
import random

import numpy as np
import pytest
import tifffile
import torch
from safetensors.torch import load_file

from engine.loader_rng import epoch_generator, seed_loader_for_epoch
from models.example.Denoise_model import Denoise_model
from tests.conftest import run_folder, run_trainer


def noisy_optimize_parameters(self):
    """Denoise_model's step with input noise drawn from torch's, numpy's, Python's (and CUDA's) RNGs."""
    inp = self.sample["inp"]
    noise = torch.randn_like(inp) + float(np.random.randn()) + random.gauss(0.0, 1.0)
    if torch.cuda.is_available():
        noise = noise + torch.randn(1, device="cuda").item()
    self.sample["inp"] = inp + 0.1 * noise
    return ORIGINAL(self)


ORIGINAL = Denoise_model.optimize_parameters


def weights(config, folder="final"):
    return load_file(os.path.join(run_folder(config), folder, "net_g", "model.safetensors"))


def test_loader_generator_depends_only_on_seed_and_epoch():
    a, b = epoch_generator(3, 1), epoch_generator(3, 1)
    assert torch.equal(torch.randint(0, 2**31, (4,), generator=a), torch.randint(0, 2**31, (4,), generator=b))
    assert not torch.equal(
        torch.randint(0, 2**31, (4,), generator=epoch_generator(3, 2)),
        torch.randint(0, 2**31, (4,), generator=epoch_generator(3, 1)),
    )
    loader = torch.utils.data.DataLoader(list(range(8)), batch_size=2)
    seed_loader_for_epoch(loader, 3, 0)
    before = torch.get_rng_state()
    list(loader)
    assert torch.equal(torch.get_rng_state(), before)  # iterating it left the global RNG alone


def test_sampler_generators_are_found_through_accelerate_wrappers():
    """The sampler's generator is reseeded below SkipBatchSampler / BatchSamplerShard, in place."""
    from accelerate.data_loader import BatchSamplerShard, SkipBatchSampler

    def wrapped_loader(initial_seed):
        generator = torch.Generator().manual_seed(initial_seed)
        sampler = torch.utils.data.WeightedRandomSampler([1.0] * 6 + [3.0] * 2, 8, generator=generator)
        shard = BatchSamplerShard(
            torch.utils.data.BatchSampler(sampler, 2, False), num_processes=2, process_index=1
        )
        return torch.utils.data.DataLoader(
            list(range(8)), batch_sampler=SkipBatchSampler(shard, 1)
        ), generator

    first, generator = wrapped_loader(1)
    second, _ = wrapped_loader(2)  # another starting state, as a resumed run's sampler has
    seed_loader_for_epoch(first, 3, 1)
    seed_loader_for_epoch(second, 3, 1)
    assert first.batch_sampler.batch_sampler.batch_sampler.sampler.generator is generator
    before = torch.get_rng_state()
    assert [b.tolist() for b in first] == [b.tolist() for b in second]
    assert torch.equal(torch.get_rng_state(), before)
    seed_loader_for_epoch(second, 3, 2)
    seed_loader_for_epoch(first, 3, 1)
    assert [b.tolist() for b in first] != [b.tolist() for b in second]  # another epoch, other indices


def assert_resumes_to(reference, config, tmp_path, *checkpoints) -> None:
    """Resuming `config`'s run from each checkpoint ends at the uninterrupted weights (1e-6)."""
    for checkpoint in checkpoints:
        resumed = copy.deepcopy(config)
        resumed["experiment_key"] = f"from-{checkpoint}"
        resumed["path"].update(resume_from_path=run_folder(config), resume_from_checkpoint=checkpoint)
        assert run_trainer(resumed, tmp_path, name=f"{checkpoint}.yml") == 0
        for key, value in weights(resumed).items():
            torch.testing.assert_close(value, reference[key], rtol=0, atol=1e-6)


@pytest.mark.e2e
def test_resume_mid_epoch_with_noise_from_every_generator(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(Denoise_model, "optimize_parameters", noisy_optimize_parameters)
    # 64 samples / 8 = 8 batches an epoch: checkpoint-3 is mid-epoch, and the run crosses an epoch.
    tiny_config["train"].update(max_train_steps=11, checkpointing_steps=3, checkpoints_total_limit=None)
    assert run_trainer(tiny_config, tmp_path) == 0
    reference = weights(tiny_config)
    assert_resumes_to(reference, tiny_config, tmp_path, "checkpoint-3", "checkpoint-9")
    # the noise matters: a run with other noise ends elsewhere
    other = copy.deepcopy(tiny_config)
    other.update(experiment_key="other", seed=8)
    assert run_trainer(other, tmp_path, name="other.yml") == 0
    assert max((weights(other)[k] - v).abs().max().item() for k, v in reference.items()) > 1e-4


def balanced_manifest(folder) -> str:
    """24 noisy/clean 16x16 TIF pairs, 18 of class 'a' and 6 of class 'b': a WeightedRandomSampler draws both equally."""
    rng = np.random.default_rng(0)
    rows = ["cond,gt,kind"]
    for i in range(24):
        gt = rng.random((16, 16), dtype=np.float32)
        tifffile.imwrite(folder / f"gt{i}.tif", gt)
        tifffile.imwrite(folder / f"cond{i}.tif", gt + 0.2 * rng.standard_normal((16, 16)).astype(np.float32))
        rows.append(f"cond{i}.tif,gt{i}.tif,{'a' if i < 18 else 'b'}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return str(folder / "manifest.csv")


@pytest.mark.e2e
def test_resume_with_sample_weights_replays_the_sampler(tiny_config, tmp_path, monkeypatch):
    """The sampler of `sample_weights()` has its own generator, outside the checkpoint: it must be seeded
    per epoch, or a run resumed in epoch 1 draws epoch 0's indices again."""
    monkeypatch.setattr(Denoise_model, "optimize_parameters", noisy_optimize_parameters)
    data = {
        "type": "ManifestDataset",
        "csv": balanced_manifest(tmp_path),
        "columns": {"cond": "cond", "gt": "gt"},
    }
    tiny_config["datasets"] = {"train": {**data, "balance_by": "kind"}, "val": data}
    # 24 samples / 8 = 3 batches an epoch: checkpoint-2 is in epoch 0, checkpoint-4 in epoch 1.
    tiny_config["train"].update(max_train_steps=8, checkpointing_steps=2, checkpoints_total_limit=None)
    tiny_config["train"]["validation_steps"] = 8
    assert run_trainer(tiny_config, tmp_path) == 0
    assert_resumes_to(weights(tiny_config), tiny_config, tmp_path, "checkpoint-2", "checkpoint-4")
