"""A catalogue of bad inputs: each gives one sentence naming the culprit, exit 2, no traceback, and
leaves every existing file as it was."""

import copy
import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_trainer
from tests.helpers import TINY_CONTROLNET, ldm_config, multitask_config
from tests.helpers.bad_inputs import (
    DELETE,
    assert_one_sentence,
    changed,
    denoise,
    fingerprints,
    ldm,
    multitask,
    vae,
)

HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"  # the shape of a Hugging Face token, not a real one
COMET = "Ab3dEf6hIj9lMn2pQr5tUv8xY"  # 25 letters and digits, the shape of a Comet API key

# (id, config, extra CLI arguments, text the one-line error must contain)
CASES = [
    ("top-level typo", denoise(seeed=1), [], "Unknown key 'seeed' (did you mean 'seed'?)"),
    (
        "optim typo",
        denoise(train__optim__lerning_rate=1e-3),
        [],
        "'train.optim.lerning_rate' (did you mean 'learning_rate'?)",
    ),
    ("path typo", denoise(path__resume_from_checkpont="latest"), [], "did you mean 'resume_from_checkpoint'"),
    ("val typo", denoise(val__batch_szie=4), [], "'val.batch_szie' (did you mean 'batch_size'?)"),
    ("scheduler typo", denoise(train__scheduler__lr_warmup_step=3), [], "did you mean 'lr_warmup_steps'"),
    ("ema typo", denoise(train__ema={"decy": 0.9}), [], "'train.ema.decy' (did you mean 'decay'?)"),
    (
        "batch size type",
        denoise(train__batch_size="eight"),
        [],
        "'train.batch_size' must be an int, got 'eight'",
    ),
    ("batch size range", denoise(train__batch_size=0), [], "'train.batch_size' is 0; it must be at least 1"),
    (
        "negative learning rate",
        denoise(train__optim__learning_rate=-1.0),
        [],
        "'train.optim.learning_rate' is -1.0",
    ),
    (
        "beta above 1",
        denoise(train__optim__adam_beta1=1.5),
        [],
        "'train.optim.adam_beta1' is 1.5; it must be below 1.0",
    ),
    (
        "checkpoint limit 0",
        denoise(train__checkpoints_total_limit=0),
        [],
        "'train.checkpoints_total_limit' is 0",
    ),
    (
        "mixed precision",
        denoise(mixed_precision="fp32"),
        [],
        "'mixed_precision' is 'fp32'; allowed: no, fp16, bf16",
    ),
    ("tracker", denoise(report_to="wandb"), [], "'report_to' is 'wandb'"),
    ("scheduler type", denoise(train__scheduler__type="cosin"), [], "did you mean 'cosine'"),
    (
        "nan policy",
        denoise(train__nan_policy="ignore"),
        [],
        "'train.nan_policy' is 'ignore'; allowed: raise, skip",
    ),
    (
        "validation steps type",
        denoise(train__validation_steps=2.5),
        [],
        "'train.validation_steps' must be an int",
    ),
    (
        "no steps",
        denoise(train__max_train_steps=None, train__num_train_epochs=None),
        [],
        "Set 'train.max_train_steps' or 'train.num_train_epochs'",
    ),
    ("missing model_type", denoise(model_type=DELETE), [], "'model_type' is missing"),
    ("missing datasets", denoise(datasets=DELETE), [], "'datasets' is missing"),
    ("missing dataset type", denoise(datasets__train__type=DELETE), [], "'datasets.train.type' is missing"),
    (
        "dataset block typo",
        denoise(datasets__trian={"type": "DummyDataset", "size": 2}),
        [],
        "'datasets.trian' (did you mean 'train'?)",
    ),
    ("missing network type", denoise(network__type=DELETE), [], "The 'network' block needs a 'type'"),
    ("unknown model", denoise(model_type="Denoise_modle"), [], "Did you mean 'Denoise_model'?"),
    ("unknown arch", denoise(network__type="TinyDenoizer"), [], "Did you mean 'TinyDenoiser_arch'?"),
    (
        "unknown dataset",
        denoise(datasets__train__type="SyntheticShapeDataset"),
        [],
        "Did you mean 'SyntheticShapesDataset'?",
    ),
    (
        "network key typo",
        denoise(network__hiden_channels=4),
        [],
        "'network.hiden_channels' for TinyDenoiser_config (did you mean 'hidden_channels'?)",
    ),
    (
        "dataset key typo",
        denoise(datasets__train__image_sise=8),
        [],
        "'datasets.train.image_sise' (did you mean 'image_size'?)",
    ),
    ("loss name", denoise(train__loss="1*MSE+0.1*LPIPS"), [], "unknown loss 'LPIPS'"),
    ("loss syntax", denoise(train__loss="MSE*0.5"), [], "is not of the form 'weight*Name'"),
    (
        "metric name",
        denoise(val__metrics={"psrn": {}}),
        [],
        "Unknown metric 'val.metrics.psrn' (did you mean 'psnr'?)",
    ),
    (
        "metric option",
        denoise(val__metrics={"psnr": {"crp": 1}}),
        [],
        "'val.metrics.psnr.crp' (did you mean 'crop'?)",
    ),
    ("token in yaml", denoise(hub_token="hf_x"), [], "looks like a secret"),
    ("push without repo", denoise(push_to_hub=True), [], "'hub_model_id' is empty"),
    (
        "-test of a run without checkpoints",
        denoise(path__resume_from_checkpoint="latest"),
        ["-test"],
        "-test: no checkpoint found",
    ),
    (
        "-test with a missing folder",
        denoise(path__pretrained="/nonexistent/final"),
        ["-test"],
        "'path.pretrained' is '/nonexistent/final'",
    ),
    (
        "resume a missing checkpoint",
        denoise(path__resume_from_checkpoint="checkpoint-99"),
        [],
        "'path.resume_from_checkpoint' is 'checkpoint-99'",
    ),
    ("override without =", denoise(), ["train.batch_size"], "must have the form key=value"),
    ("bad interpolation", denoise(train__batch_size="${train.nothing}"), [], "cannot be resolved"),
    ("VAE recon type", vae(train__recon_type="l2"), [], "'train.recon_type' is 'l2'"),
    ("VAE disc loss", vae(train__disc_loss="wgan"), [], "'train.disc_loss' is 'wgan'"),
    ("VAE train key typo", vae(train__kl_weigth=1e-4), [], "'train.kl_weigth' (did you mean 'kl_weight'?)"),
    (
        "VAE perceptual without weights",
        vae(train__perceptual_weight=0.1),
        [],
        "'train.perceptual_weights_path' is empty",
    ),
    ("VAE batch key", vae(val__gt_key="image"), [], "The batch has no key 'image' (val.gt_key)"),
    (
        "MONAI checkpoint on the wrong arch",
        vae(train__monai_checkpoint="x.pth"),
        [],
        "needs 'network.type: MonaiAutoencoderKL'",
    ),
    (
        "empty TIF folder",
        vae(datasets={"train": {"type": "TIFFolderDataset", "dir": "@EMPTY@"}}),
        [],
        "@EMPTY@",
    ),
    (
        "missing TIF folder",
        vae(datasets={"train": {"type": "TIFFolderDataset", "dir": "/nonexistent/tifs"}}),
        [],
        "/nonexistent/tifs",
    ),
    (
        "unknown lens file",
        vae(datasets={"train": {"type": "PSFDataset", "lens_file": "cooke_tripplet.json"}}),
        [],
        "cooke_tripplet.json",
    ),
    (
        "malformed lens file",
        vae(datasets={"train": {"type": "PSFDataset", "lens_file": "@BADLENS@"}}),
        [],
        "bad_lens.json",
    ),
    # values the per-key schema lets through
    (
        "learning rate nan",
        denoise(train__optim__learning_rate=float("nan")),
        [],
        "'train.optim.learning_rate' is nan",
    ),
    (
        "learning rate inf",
        denoise(train__optim__learning_rate=float("inf")),
        [],
        "'train.optim.learning_rate' is inf",
    ),
    ("beta2 nan", denoise(train__optim__adam_beta2=float("nan")), [], "'train.optim.adam_beta2' is nan"),
    (
        "negative inf warm-up power",
        denoise(train__scheduler__lr_power=float("-inf")),
        [],
        "lr_power' is -inf",
    ),
    ("seed negative", denoise(seed=-1), [], "'seed' is -1"),
    ("seed too large", denoise(seed=2**32), [], "'seed' is 4294967296; it must be at most 4294967295"),
    (
        "dataset seed too large",
        denoise(datasets__train__seed=2**64),
        [],
        "'datasets.train.seed' is 18446744073709551616; it must be at most 4294967295",
    ),
    (
        "a whole number past 64 bits",
        denoise(train__max_train_steps=2**70),
        [],
        "'train.max_train_steps' is 1180591620717411303424; every whole number in the config must fit in 64 bits",
    ),
    (
        "null for a key with a default",
        denoise(train__batch_size=None),
        [],
        "'train.batch_size' is null; it must be an int (leave it out for its default, 16)",
    ),
    ("empty text", denoise(name=""), [], "'name' is empty text; give text, or leave it out"),
    ("model_type not text", denoise(model_type=5), [], "'model_type' must be a str, got 5 (int)"),
    ("empty size list", vae(train__patch_size=[]), [], "'train.patch_size' is an empty list"),
    (
        "arch list of text",
        vae(network__block_out_channels=["8", 16]),
        [],
        "'network.block_out_channels' is ['8', 16]; AutoencoderKL_config needs a list of whole numbers here",
    ),
    (
        "dropout outside 0..1",
        vae(network_d={"type": "PatchDiscriminator", "dropout": -0.5}),
        [],
        "'network_d.dropout' is -0.5; PatchDiscriminator_config reads it as a probability, from 0 to 1",
    ),
    (
        "discriminator arch check names its block",
        vae(network_d={"type": "PatchDiscriminator", "spatial_dims": 1}),
        [],
        "'network_d.spatial_dims' is 1; PatchDiscriminator takes 2 or 3",
    ),
    (
        "norm epsilon not positive",
        ldm(network__norm_eps=0.0),
        [],
        "'network.norm_eps' is 0.0; DiffusionUNet_config adds it to a variance under a square root",
    ),
    (
        "3-D data into a 2-D network",
        denoise(datasets__train__spatial_dims=3, datasets__val__spatial_dims=3),
        [],
        "are 3-D (shape [8, 1, 16, 16, 16]) but the network is 2-D (conv2d); "
        "'datasets.train.spatial_dims' is 3; set it to 2",
    ),
    (
        "network channels as text",
        denoise(network__hidden_channels="8"),
        [],
        "'network.hidden_channels' must be int",
    ),
    (
        "network channels negative",
        denoise(network__hidden_channels=-4),
        [],
        "'network.hidden_channels' is -4",
    ),
    ("network layers zero", denoise(network__num_layers=0), [], "'network.num_layers' is 0"),
    ("network channels float", denoise(network__in_channels=1.5), [], "'network.in_channels' must be int"),
    (
        "VAE network list of text",
        vae(network__latent_channels="4"),
        [],
        "'network.latent_channels' must be int",
    ),
    (
        "num_images all",
        vae(val__num_images="all"),
        [],
        "'val.num_images' must be an int, got 'all'",
    ),
    ("dataset size 0", denoise(datasets__train__size=0), [], "'datasets.train.size' is 0"),
    (
        "dataset size text",
        denoise(datasets__val__size="16"),
        [],
        "'datasets.val.size' must be an int, got '16'",
    ),
    (
        "image size 0",
        denoise(datasets__train__image_size=0),
        [],
        "'datasets.train.image_size' is 0; it must be at least",
    ),
    (
        "SSIM on images smaller than its window",
        denoise(datasets__val__image_size=2),
        [],
        "The metric 'val.metrics.ssim' cannot be computed on the 2x2 validation images",
    ),
    (
        "VAE sample size negative",
        vae(network__sample_size=-16),
        [],
        "'network.sample_size' is -16; a size must be",
    ),
    (
        "metric data_range 0",
        denoise(val__metrics={"psnr": {"data_range": 0}}),
        [],
        "'val.metrics.psnr.data_range' is 0",
    ),
    (
        "metric data_range nan",
        denoise(val__metrics={"ssim": {"data_range": float("nan")}}),
        [],
        "data_range' is nan",
    ),
    (
        "metric crop too large",
        denoise(val__metrics={"psnr": {"crop": 8}}),
        [],
        "'val.metrics.psnr.crop' is 8",
    ),
    (
        "metric crop far too large",
        denoise(val__metrics={"ssim": {"crop": 40}}),
        [],
        "'val.metrics.ssim.crop' is 40",
    ),
    # secrets by value, under any key, and secret-looking keys at any depth
    (
        "HF token as project name",
        denoise(tracker_project_name=HF),
        [],
        "'tracker_project_name' looks like an access",
    ),
    ("HF token as run name", denoise(name=HF), [], "'name' looks like an access token"),
    ("HF token in a nested block", denoise(comet={"auth": "x"}), [], "'comet.auth' looks like a secret"),
    (
        "Comet key as experiment key",
        denoise(experiment_key=COMET),
        [],
        "'experiment_key' looks like an access token",
    ),
    ("token key in train", denoise(train__hf_token="x"), [], "'train.hf_token' looks like a secret"),
    ("password key in a dataset", denoise(datasets__train__password="x"), [], "'datasets.train.password'"),
    (
        "HF token as a dataset folder",
        denoise(datasets__train__dir=f"/data/{HF}"),
        [],
        "'datasets.train.dir' looks",
    ),
    ("HF token in an override", denoise(), [f"tracker_project_name={HF}"], "looks like an access token"),
    (
        "Comet key in an override",
        denoise(),
        [f"train.note={COMET}"],
        "'train.note' looks like an access token",
    ),
    # malformed overrides
    (
        "override unclosed list",
        denoise(),
        ["train.batch_size=[1,"],
        "'train.batch_size=[1,' has a value that cannot",
    ),
    ("override empty value", denoise(), ["train.batch_size="], "gives 'train.batch_size' no value"),
    ("override dot key", denoise(), [".=3"], "'.=3' has the key '.', which is not a dotted key name"),
    ("override leading dot", denoise(), [".key=1"], "'.key=1' has the key '.key'"),
    ("override empty part", denoise(), ["train..batch_size=2"], "has the key 'train..batch_size'"),
    ("override no key", denoise(), ["=3"], "must have the form key=value"),
    ("override nan", denoise(), ["train.optim.learning_rate=.nan"], "'train.optim.learning_rate' is nan"),
    # paths
    (
        "resume from a missing run folder",
        denoise(path__resume_from_checkpoint="latest", path__resume_from_path="/nonexistent/run"),
        [],
        "'path.resume_from_path' is '/nonexistent/run', which is missing",
    ),
    (
        "pretrained is an interrupted checkpoint",
        denoise(path__pretrained="@TMPCKPT@"),
        [],
        "a checkpoint whose write was interrupted",
    ),
    (
        "pretrained truncated weights",
        denoise(path__pretrained="@TRUNCATED@"),
        [],
        "truncated/net_g/model.safetensors' is not a readable safetensors file",
    ),
    (
        "pretrained garbage weights",
        denoise(path__pretrained="@GARBAGE@"),
        ["-test"],
        "garbage/net_g/model.safetensors' is not a readable",
    ),
    ("root is a regular file", denoise(path__root="@FILE@"), [], "is a file, not a folder"),
    ("root below a regular file", denoise(path__root="@FILE@/runs"), [], "is a file, not a folder"),
    (
        "logging dir outside the run",
        denoise(path__logging_dir="/tmp/elsewhere"),
        [],
        "'path.logging_dir' is '/tmp/elsewhere'",
    ),
    (
        "logging dir climbing out",
        denoise(path__logging_dir="../../logs"),
        [],
        "must be a folder inside the run folder",
    ),
    (
        "an LDM's vae block on a VAE",
        vae(vae={"pretrained": "@TRUNCATED@"}),
        [],
        "Unknown key 'vae' (did you mean 'val'?): it is read by LDM_model, not by VAE_model",
    ),
    (
        "LDM's vae.pretrained with truncated weights",
        ldm(vae={"pretrained": "@TRUNCATED@"}),
        [],
        "'vae.pretrained': '",
    ),
    (
        "LDM's path.pretrained with a half-written ldm.json",
        ldm(path__pretrained="@HALFLDM@"),
        [],
        "'path.pretrained': '@HALFLDM@/ldm.json' is not valid JSON (line 1",
    ),
    (
        "ControlNet's ldm.pretrained with a half-written ldm.json",
        changed(TINY_CONTROLNET, {"ldm__pretrained": "@HALFLDM@"}),
        [],
        "'ldm.pretrained': '@HALFLDM@/ldm.json' is not valid JSON (line 1",
    ),
    (
        "an arch value the library refuses",
        vae(network__act_fn="zzz"),
        [],
        "AutoencoderKL_arch cannot be built from 'network' (ValueError: activation function zzz not found",
    ),
    (
        "empty MONAI checkpoint",
        vae(network={"type": "MonaiAutoencoderKL"}, train__monai_checkpoint="@EMPTYPTH@"),
        [],
        "empty.pth', which is empty (0 bytes)",
    ),
    # the first batch against the model
    (
        "batch without the key the model reads",
        denoise(datasets__train={"type": "DummyDataset", "size": 16}),
        [],
        "reads the batch key 'cond', which 'datasets.train' (DummyDataset) does not give; its batches have: x",
    ),
    (
        "network channels differ from the data",
        denoise(datasets__train__channels=3, datasets__val__channels=3),
        [],
        "expects 1 input channels but the batch from 'datasets.train' (SyntheticShapesDataset) has 3",
    ),
    (
        "float64 TIF beyond float32",
        vae(datasets={"train": {"type": "TIFFolderDataset", "dir": "@HUGETIF@"}}),
        [],
        "huge.tif' has pixels up to 1e+300",
    ),
]


# Found at the first validation, after some steps were trained: that run folder is kept.
FAILS_AFTER_TRAINING = {"The metric 'val.metrics.ssim' cannot be computed on the 2x2 validation images"}


def _make_fixtures(tmp_path) -> dict[str, str]:
    """Files the catalogue's placeholders point at: an empty folder, a bad lens, broken weights, ..."""
    import numpy as np
    import tifffile
    import torch
    from safetensors.torch import save_file

    empty = tmp_path / "empty"
    empty.mkdir()
    bad_lens = tmp_path / "bad_lens.json"
    bad_lens.write_text(
        json.dumps({"r_sensor": 2.0, "surfaces": [{"type": "Spheric", "r": 5.0, "d_next": 3.0}]})
    )
    weights = {"body.0.weight": torch.zeros(8, 1, 3, 3)}
    staging = tmp_path / "experiments" / "earlier_run" / "checkpoint-3.tmp" / "net_g"
    staging.mkdir(parents=True)
    save_file(weights, staging / "model.safetensors")
    for name, damage in (
        ("truncated", lambda b: b[: len(b) // 2]),
        ("garbage", lambda b: b"\x00garbage" * 8),
    ):
        folder = tmp_path / name / "net_g"
        folder.mkdir(parents=True)
        save_file(weights, folder / "model.safetensors")
        (folder / "model.safetensors").write_bytes(damage((folder / "model.safetensors").read_bytes()))
    (tmp_path / "empty.pth").write_bytes(b"")
    half_ldm = tmp_path / "ldm_run" / "final"
    half_ldm.mkdir(parents=True)
    (half_ldm / "ldm.json").write_text('{"unet": "unet", "vae": {"pretra')  # a write cut short
    regular_file = tmp_path / "not_a_folder"
    regular_file.write_text("a file where a folder should be")
    huge = tmp_path / "huge_tifs"
    huge.mkdir()
    for i in range(2):
        tifffile.imwrite(huge / ("huge.tif" if i else "fine.tif"), np.full((16, 16), 1e300 if i else 1.0))
    return {
        "@EMPTY@": str(empty),
        "@BADLENS@": str(bad_lens),
        "@TMPCKPT@": str(staging.parent),
        "@TRUNCATED@": str(tmp_path / "truncated"),
        "@GARBAGE@": str(tmp_path / "garbage"),
        "@FILE@": str(regular_file),
        "@HUGETIF@": str(huge),
        "@EMPTYPTH@": str(tmp_path / "empty.pth"),
        "@HALFLDM@": str(half_ldm),
    }


@pytest.mark.e2e
@pytest.mark.parametrize("config, extra, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_sentence(config, extra, expected, tmp_path, capsys):
    config = copy.deepcopy(config)
    root = tmp_path / "experiments"
    (root / "earlier_run").mkdir(parents=True)
    sentinel = root / "earlier_run" / "weights.txt"
    sentinel.write_text("trained weights")
    if "path" in config and not config["path"].get("root"):
        config["path"]["root"] = str(root)
    text = json.dumps(config)
    placeholders = _make_fixtures(tmp_path)
    for placeholder, value in placeholders.items():
        text = text.replace(placeholder, value)
        expected = expected.replace(placeholder, value)
    config = json.loads(text)
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file())
    hashes = fingerprints(tmp_path)

    status = run_trainer(config, tmp_path, *extra)

    assert_one_sentence(capsys.readouterr().err, status, expected)
    for path, mtime in before:  # nothing that was on disk was changed or removed
        assert path.is_file() and path.stat().st_mtime_ns == mtime, path
    assert all(fingerprints(tmp_path).get(p) == h for p, h in hashes.items() if p.name != "exp.yml")
    assert sentinel.read_text() == "trained weights"
    if expected not in FAILS_AFTER_TRAINING:  # a run that trained nothing leaves no run folder
        assert sorted(os.listdir(root)) == ["earlier_run"]


@pytest.mark.e2e
def test_a_run_that_fails_at_its_first_batch_can_be_rerun_as_it_was_named(tmp_path, capsys):
    """The first batch does not fit the network: nothing was trained, so the run folder goes, and the
    corrected config starts under the same experiment_key instead of being refused as a second run."""
    config = denoise(datasets__train__channels=3, datasets__val__channels=3, experiment_key="named")
    config["path"]["root"] = str(tmp_path / "experiments")
    assert run_trainer(config, tmp_path) == 2
    assert not (tmp_path / "experiments" / config["name"] / "named").exists()
    fixed = denoise(experiment_key="named")
    fixed["path"]["root"] = config["path"]["root"]
    assert run_trainer(fixed, tmp_path) == 0, capsys.readouterr().err[-2000:]
    assert (tmp_path / "experiments" / fixed["name"] / "named" / "final").is_dir()


def test_the_catalogue_is_large():
    assert len(CASES) >= 90


@pytest.mark.e2e
def test_debug_shows_the_traceback(tmp_path):
    import trainer
    from tests.conftest import write_config

    path = write_config(denoise(seeed=1), tmp_path / "x.yml")
    with pytest.raises(Exception, match="seeed"):
        trainer.main(["-opt", path, "--debug"])
    assert os.path.isfile(path)


# ----------------------------------------------------------------------------- beyond the config


# ----------------------------------------------------------------------------- stage 2 (LDM_model)


VECTOR = {"type": "vector", "key": "x"}

LDM_CASES = [
    (
        "more sampling steps than timesteps",
        ldm(diffusion__num_train_timesteps=2),
        "'val.num_inference_steps' is 4, more than the 2 of 'diffusion.num_train_timesteps'",
    ),
    (
        "guidance negative",
        ldm(val__guidance_scale=-3.0),
        "'val.guidance_scale' is -3.0; it must be at least 0.0",
    ),
    (
        "beta_start above beta_end",
        ldm(diffusion__beta_schedule="linear", diffusion__beta_start=0.5, diffusion__beta_end=0.1),
        "'diffusion.beta_start' / 'diffusion.beta_end' are 0.5 / 0.1; they must satisfy 0 < beta_start < beta_end < 1",
    ),
    (
        "beta_end above 1",
        ldm(diffusion__beta_schedule="linear", diffusion__beta_end=2.0),
        "are 0.0001 / 2; they must satisfy",
    ),
    (
        "betas with the cosine schedule",
        ldm(diffusion__beta_end=0.02),
        "'diffusion.beta_schedule: cosine' has no beta range",
    ),
    ("scale factor 0", ldm(vae__scale_factor=0), "'vae.scale_factor' is 0; a number must be above 0"),
    ("scale factor negative", ldm(vae__scale_factor=-1.0), "'vae.scale_factor' is -1.0; a number must be"),
    (
        "features as one string",
        ldm(condition={**VECTOR, "features": "v0"}),
        "'condition.features' is 'v0'; give a list, e.g. features: ['v0']",
    ),
    (
        "log_features as a number",
        ldm(condition={**VECTOR, "log_features": 0}),
        "'condition.log_features' is 0; give a list",
    ),
    (
        "reciprocal_features of text",
        ldm(condition={**VECTOR, "reciprocal_features": ["a"]}),
        "'condition.reciprocal_features' has 'a'; give entry numbers 0, 1, ...",
    ),
    ("indices of text", ldm(condition={**VECTOR, "indices": ["a"]}), "'condition.indices' has 'a'"),
    (
        "features empty",
        ldm(condition={**VECTOR, "features": []}),
        "'condition.features' is an empty list, which would leave the model no numbers",
    ),
    ("indices empty", ldm(condition={**VECTOR, "indices": []}), "'condition.indices' is an empty list"),
    (
        "indices past the vector",
        ldm(condition={**VECTOR, "indices": [7]}),
        "'condition.indices' has [7], outside the 1 numbers of the condition 'x'",
    ),
    (
        "feature dividing by zero",
        ldm(condition={**VECTOR, "features": ["1/(v0 - v0)"]}),
        "'condition.features' has '1/(v0 - v0)', which is nan for the condition",
    ),
    (
        "feature log of a negative number",
        ldm(condition={**VECTOR, "features": ["log(v0 - 100)"]}),
        "'log(v0 - 100)', which is nan for the condition",
    ),
    (
        "class label past num_classes",
        ldm(condition={"type": "class", "key": "x", "num_classes": 2}),
        "is not one of 0 to 1; set 'condition.num_classes' to more than the largest label",
    ),
]


@pytest.mark.e2e
@pytest.mark.parametrize("config, expected", [c[1:] for c in LDM_CASES], ids=[c[0] for c in LDM_CASES])
def test_bad_stage2_input_gets_one_clear_sentence(config, expected, stage1, tmp_path, capsys):
    config = copy.deepcopy(config)
    config["vae"]["pretrained"] = stage1
    config["path"]["root"] = str(tmp_path / "experiments")
    stage1_files = fingerprints(Path(stage1))
    status = run_trainer(config, tmp_path)
    assert_one_sentence(capsys.readouterr().err, status, expected)
    assert fingerprints(Path(stage1)) == stage1_files


@pytest.mark.e2e
@pytest.mark.parametrize(
    "config, expected",
    [
        (multitask(network__heads=["RGBHead"]), "'network.heads[0]' is 'RGBHead'; each head is a block"),
        (
            multitask(network__heads=[{"type": "RGBHead", "name": "rgb", "out_channels": "3"}]),
            "'network.heads[0].out_channels' is '3'; give a whole number",
        ),
        (
            multitask(network__downsampling_steps=6),
            "are 16x16, but MultiTask_model's networks need every side a multiple of 64",
        ),
    ],
    ids=["head not a block", "head channels as text", "downsampling past the image size"],
)
def test_bad_multitask_input_gets_one_clear_sentence(config, expected, tmp_path, capsys):
    config = copy.deepcopy(config)
    config["path"]["root"] = str(tmp_path / "experiments")
    earlier = tmp_path / "experiments" / "earlier_run" / "weights.txt"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("trained weights")
    status = run_trainer(config, tmp_path)
    assert_one_sentence(capsys.readouterr().err, status, expected)
    assert earlier.read_text() == "trained weights"


@pytest.mark.e2e
def test_a_negative_controlnet_scale_is_refused_before_anything_loads(tmp_path, capsys):
    config = changed(
        TINY_CONTROLNET, {"ldm__pretrained": "/nonexistent", "control__conditioning_scale": -1.0}
    )
    config["path"]["root"] = str(tmp_path / "experiments")
    status = run_trainer(config, tmp_path)
    assert_one_sentence(
        capsys.readouterr().err, status, "'control.conditioning_scale' is -1.0; it must be at least 0.0"
    )


# ----------------------------------------------------------------------------- more model keys


@pytest.mark.e2e
def test_a_misspelled_metric_is_named_in_one_sentence(tiny_config, tmp_path, capsys):
    tiny_config["train"].update(max_train_steps=2, validation_steps=2, best_metric="val_psrn")
    assert run_trainer(tiny_config, tmp_path) == 2
    err = capsys.readouterr().err
    assert "'train.best_metric' is 'val_psrn' (did you mean 'val_psnr'?)" in err and "Traceback" not in err


@pytest.mark.e2e
def test_a_loss_term_on_a_missing_head_is_one_clear_sentence(tmp_path, capsys):
    config = multitask_config(tmp_path)
    config["train"]["losses"] = [{"type": "CrossEntropy", "key": "segmentaton", "target": "mask"}]
    assert run_trainer(config, tmp_path) == 2
    error = capsys.readouterr().err
    assert "'train.losses[0].key' is 'segmentaton'" in error and "did you mean 'segmentation'" in error


@pytest.mark.e2e
def test_condition_features_and_indices_are_refused_together(stage1, tmp_path, capsys):
    condition = {"type": "vector", "key": "x", "indices": [0], "features": ["v0"]}
    assert run_trainer(ldm_config(tmp_path, stage1, condition=condition), tmp_path) == 2
    assert "'condition.features' and 'condition.indices' both pick" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "experiments")


@pytest.mark.e2e
def test_an_image_condition_cannot_be_injected_into_the_time_embedding(stage1, tmp_path, capsys):
    config = ldm_config(tmp_path, stage1, condition={"type": "image", "inject": "both"})
    assert run_trainer(config, tmp_path) == 2
    assert "'condition.inject: both' needs a global condition" in capsys.readouterr().err
