"""PSF_model and PSF_Emb_model: PSFs ray-traced on the fly, their arches, training, resume and densify."""

import copy
import logging
import os

import pytest
import torch

from tests.conftest import read_scalars, reset_accelerate, run_folder, run_trainer, write_config
from tests.helpers import TINY_EMB_NETWORK, TINY_PSF, emb_config


@pytest.fixture(autouse=True)
def one_thread():
    # The machine is shared: one thread is steadier than two that stall on each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def psf_config(tmp_path):
    config = copy.deepcopy(TINY_PSF)
    config["path"]["root"] = str(tmp_path / "experiments")
    return config


@pytest.fixture
def build_model(tmp_path):
    """Build a model from a config as the trainer does (validated, lens loaded), without training."""
    import trainer

    def build(config):
        path = write_config(config, tmp_path / f"{config['experiment_key']}.yml")
        model, _ = trainer.build(trainer.parse_args(["-opt", path]))
        return model

    yield build
    reset_accelerate()


def psnr(pred, target):
    mse = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    return float((-10 * torch.log10(mse)).mean())


# ------------------------------------------------------------------ feed_data


def test_feed_data_simulates_the_psfs_of_its_coordinates_reproducibly(psf_config, build_model):
    model = build_model(psf_config)
    model.feed_data({"x": torch.tensor([3, 5])}, is_train=False)
    inp, psf = model.sample["inp"], model.sample["psf"]
    assert inp.shape == (2, 3) and inp.dtype == torch.float32 and inp.abs().max() <= 1
    assert psf.shape == (2, 2, 9, 9) and psf.device == model.accelerator.device
    torch.testing.assert_close(psf.amax(dim=(1, 2, 3)), torch.ones(2))  # psf_normalize: peak

    # A validation item depends on (seed, index) only, not on its batch; not a cached copy either.
    model._validation_items.clear()
    model.feed_data({"x": torch.tensor([5])}, is_train=False)
    torch.testing.assert_close(model.sample["psf"][0], psf[1])
    torch.testing.assert_close(model.sample["inp"][0], inp[1])

    # The PSF is the lens's PSF at those coordinates: a clean trace of the same points agrees.
    points = model.coords_to_points(inp)
    assert torch.all(points[:, 2] <= -2000.0) and torch.all(points[:, 2] >= -2500.0)
    clean = model.simulator.simulate(points, generator=torch.Generator().manual_seed(0))
    clean = clean / clean.amax(dim=(1, 2, 3), keepdim=True)
    assert psnr(psf, clean) > 30.0
    swapped = clean.flip(0)
    assert psnr(psf, swapped) < psnr(psf, clean) - 5.0

    # Training draws new points each epoch, reproducibly, from another stream than validation.
    model.feed_data({"x": torch.tensor([3, 5])}, is_train=True)
    first = {k: v.clone() for k, v in model.sample.items()}
    assert not torch.allclose(first["inp"], inp)
    model.feed_data({"x": torch.tensor([3, 5])}, is_train=True)
    torch.testing.assert_close(model.sample["psf"], first["psf"])
    model.state.epoch += 1
    model.feed_data({"x": torch.tensor([3, 5])}, is_train=True)
    assert not torch.allclose(model.sample["inp"], first["inp"])


def test_psf_model_builds_net_g_only_when_its_own_training_step_is_used(psf_config, build_model):
    from models.PSFlatent.PSF_model import PSF_model

    model = build_model(psf_config)
    # add_network returns the handle the model calls; self.models holds the bare arch behind it
    assert model.models == [model.net_g.arch] and type(model.net_g.arch).__name__ == "PSF_MLP_arch"

    class OwnStep(PSF_model):  # seed 003's YourVAE_model: builds its own network after super().__init__
        def optimize_parameters(self):
            return {"all": torch.zeros(())}

    reset_accelerate()
    opt = model.opt
    opt["experiment_key"] = "own"
    own = OwnStep(opt, logging.getLogger("test"))
    assert own.models == [] and not hasattr(own, "net_g")


@pytest.mark.e2e
def test_mismatched_network_and_misspelled_keys_are_one_sentence(psf_config, tmp_path, capsys):
    psf_config["network"]["kernel_size"] = 16
    assert run_trainer(psf_config, tmp_path) == 2
    assert "'network.kernel_size' is 16 but deeplens.kernel_size is 9" in capsys.readouterr().err

    psf_config = emb_config(copy.deepcopy(TINY_PSF))
    psf_config["path"]["root"] = str(tmp_path / "experiments")
    psf_config["train"]["interp_weigth"] = 1.0
    assert run_trainer(psf_config, tmp_path, name="typo.yml") == 2
    assert "did you mean 'interp_weight'" in capsys.readouterr().err


# ------------------------------------------------------------------ arches


@pytest.mark.parametrize("kernel_size", [9, 16, 33])
def test_arches_give_any_kernel_size_with_the_requested_normalisation(kernel_size):
    from models.archs import define_network

    coords = torch.rand(4, 3) * 2 - 1
    psf = torch.rand(4, 2, kernel_size, kernel_size)
    for output in ("peak", "sum", "softplus"):
        common = {"kernel_size": kernel_size, "output": output}
        kernels = [
            define_network({"type": "PSF_MLP", "out_channels": 2, "hidden_dim": 32, **common})(coords),
            define_network(
                {"type": "PSFDecoder", "out_channels": 2, "hidden_dim": 32, "base_channels": 16, **common}
            )(coords),
            define_network({**TINY_EMB_NETWORK, **common})(psf, coords).reconstruction,
        ]
        for kernel in kernels:
            assert kernel.shape == (4, 2, kernel_size, kernel_size) and kernel.min() >= 0
            if output == "sum":
                torch.testing.assert_close(kernel.sum(dim=(2, 3)), torch.ones(4, 2))
            if output == "peak":
                torch.testing.assert_close(kernel.amax(dim=(1, 2, 3)), torch.ones(4))


def test_psf_emb_save_and_reload(tmp_path):
    from models.archs import define_network, find_arch

    net = define_network(TINY_EMB_NETWORK).eval()
    net.save_pretrained(tmp_path / "emb")
    again = find_arch("PSF_Emb")[1].from_pretrained(tmp_path / "emb").eval()
    psf, coords = torch.rand(3, 2, 9, 9), torch.rand(3, 3)
    torch.testing.assert_close(again.decode(torch.ones(3, 4), coords), net.decode(torch.ones(3, 4), coords))
    torch.testing.assert_close(again.encode(psf, coords).mean, net.encode(psf, coords).mean)


# ------------------------------------------------------------------ PSF_Emb_model's losses


def test_psf_emb_encoder_sees_the_real_psf_and_its_losses_are_right(psf_config, build_model):
    model = build_model(emb_config(psf_config))
    model.feed_data({"x": torch.tensor([0, 1, 2, 3])}, is_train=True)
    sample = model.sample
    assert set(sample) == {"inp", "psf", "inp_b", "psf_b", "inp_mid", "psf_mid"}
    torch.testing.assert_close(sample["inp_mid"], (sample["inp"] + sample["inp_b"]) / 2)
    assert (sample["inp_b"] - sample["inp"]).abs().max() <= 0.3 + 1e-6

    seen = []
    arch_encode = model.net_g.encode
    model.net_g.encode = lambda psf, coords: seen.append(psf) or arch_encode(psf, coords)
    losses, out = model.compute_losses(sample_posterior=False)
    # PSF_Densify fed its encoder Gaussian noise; this one gets the ray-traced PSFs of a, b and m.
    torch.testing.assert_close(seen[0], torch.cat([sample["psf"], sample["psf_b"], sample["psf_mid"]]))
    changed = arch_encode(
        seen[0].roll(2, dims=-1), torch.cat([sample["inp"], sample["inp_b"], sample["inp_mid"]])
    )
    assert (changed.mean - out.latent_dist.mean).abs().max() > 1e-4

    posterior = out.latent_dist
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(posterior.mean, posterior.std), torch.distributions.Normal(0.0, 1.0)
    )
    torch.testing.assert_close(losses["kl"], reference.sum(dim=1).mean())
    mean_a, mean_b, mean_m = posterior.mean.split(4)
    torch.testing.assert_close(losses["interp"], ((mean_m - (mean_a + mean_b) / 2) ** 2).mean())
    expected = losses["recon"] + 1e-4 * losses["kl"] + 1.0 * losses["interp"]
    torch.testing.assert_close(losses["all"], expected)
    assert {"MSE", "recon", "kl", "interp", "all"} <= set(losses)


# ------------------------------------------------------------------ training through the trainer


@pytest.mark.e2e
def test_psf_model_trains_logs_every_term_and_resumes_exactly(psf_config, tmp_path):
    assert run_trainer(psf_config, tmp_path) == 0
    run = run_folder(psf_config)
    scalars = read_scalars(run)
    losses = scalars["train/all"]
    assert set(scalars["train/MSE"]) == set(range(1, 61))
    assert sum(losses[s] for s in range(51, 61)) < 0.5 * sum(losses[s] for s in range(1, 11))
    # Peak-normalised 9-pixel kernels: predicting all zeros scores about 14 dB here.
    assert scalars["val_psnr"][60] > 20.0 and scalars["val_psnr"][60] > scalars["val_psnr"][30]
    assert "val_loss_MSE" in scalars
    assert os.path.isfile(os.path.join(run, "images", "val_psf_truth_pred_diff_0000060.png"))
    assert set(os.listdir(os.path.join(run, "final"))) == {"net_g", "config.yml", "metrics.json"}

    # The PSFs of a step depend on (seed, epoch, indices) only: a resumed run trains on the same ones.
    resumed = copy.deepcopy(psf_config)
    resumed["experiment_key"] = "resumed"
    resumed["path"].update(resume_from_path=run, resume_from_checkpoint="checkpoint-30")
    assert run_trainer(resumed, tmp_path, name="resume.yml") == 0
    got = read_scalars(run_folder(resumed))
    for step in range(31, 61):
        assert got["train/all"][step] == pytest.approx(losses[step], rel=1e-5, abs=1e-9), step
    assert got["val_psnr"][60] == pytest.approx(scalars["val_psnr"][60], rel=1e-5)


@pytest.mark.e2e
def test_psf_emb_model_trains_and_densifies(psf_config, tmp_path):
    config = emb_config(psf_config)
    config["train"].update(max_train_steps=80, validation_steps=40, checkpointing_steps=80)
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    scalars = read_scalars(run)
    for term in ("all", "recon", "MSE", "kl", "interp"):
        assert set(scalars[f"train/{term}"]) == set(range(1, 81)), term
    first, last = range(1, 11), range(71, 81)
    assert sum(scalars["train/recon"][s] for s in last) < 0.5 * sum(scalars["train/recon"][s] for s in first)
    assert scalars["val_psnr"][80] > 20.0
    # PSFs at validation midpoints, never traced in training, decoded from their neighbours' latents.
    assert scalars["val_interp_psnr"][80] > 20.0
    for name in ("val_psf_truth_recon_diff", "val_interp_truth_pred_diff"):
        assert os.path.isfile(os.path.join(run, "images", f"{name}_0000080.png"))

    # The interpolation term shapes the latents: without it, midpoint latents stray much further.
    free = copy.deepcopy(config)
    free["experiment_key"] = "no_interp"
    free["train"]["interp_weight"] = 0.0
    assert run_trainer(free, tmp_path, name="free.yml") == 0
    unconstrained = read_scalars(run_folder(free))["train/interp"]
    assert sum(scalars["train/interp"][s] for s in last) < 0.5 * sum(unconstrained[s] for s in last)
