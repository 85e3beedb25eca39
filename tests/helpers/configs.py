"""The tiny experiment configs the tests train on, and builders that place one in a test's folder."""

import copy
import os

# A denoiser on generated shapes: the smallest run through every part of the loop.
TINY_DENOISE = {
    "name": "tiny",
    "model_type": "Denoise_model",
    "report_to": "tensorboard",
    "seed": 7,
    "mixed_precision": "no",
    "experiment_key": "run",
    "datasets": {
        "train": {"type": "SyntheticShapesDataset", "size": 64, "image_size": 16},
        "val": {"type": "SyntheticShapesDataset", "size": 16, "image_size": 16},
    },
    "network": {"type": "TinyDenoiser", "in_channels": 1, "hidden_channels": 8, "num_layers": 3},
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "scheduler": {"type": "cosine", "lr_warmup_steps": 2},
        "loss": "1*MSE",
        "batch_size": 8,
        "max_train_steps": 6,
        "validation_steps": 3,
        "checkpointing_steps": 3,
        "checkpoints_total_limit": 2,
    },
    "val": {"batch_size": 8, "metrics": {"psnr": {"crop": 0, "data_range": 1.0}, "ssim": {"crop": 0}}},
}

# The keys of a tiny 2D VQVAE arch (one channel, 16 codes of 4 numbers, 32x32 images).
TINY_VQ_ARCH = {
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "num_vq_embeddings": 16,
    "sample_size": 32,
}

# MONAI's AutoencoderKL at test size, without attention; `monai_kl(dims)` makes the `network` block.
TINY_MONAI_KL = {
    "in_channels": 1,
    "out_channels": 1,
    "channels": [8, 16],
    "latent_channels": 2,
    "num_res_blocks": 1,
    "norm_num_groups": 4,
    "attention_levels": [False, False],
    "with_encoder_nonlocal_attn": False,
    "with_decoder_nonlocal_attn": False,
}


def monai_kl(spatial_dims: int) -> dict:
    """The `network` block of a tiny MONAI AutoencoderKL run in 2D or 3D."""
    return {"type": "MonaiAutoencoderKL", "spatial_dims": spatial_dims, **TINY_MONAI_KL}


# A 2D AutoencoderKL on generated shapes; stage 1 of the LDM tests.
TINY_VAE = {
    "name": "vae",
    "model_type": "VAE_model",
    "report_to": "tensorboard",
    "seed": 3,
    "experiment_key": "run",
    "datasets": {
        "train": {"type": "SyntheticShapesDataset", "size": 64, "image_size": 16},
        "val": {"type": "SyntheticShapesDataset", "size": 16, "image_size": 16},
    },
    "network": {
        "type": "AutoencoderKL",
        "in_channels": 1,
        "out_channels": 1,
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "latent_channels": 2,
        "norm_num_groups": 4,
        "sample_size": 16,
    },
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "batch_size": 8,
        "max_train_steps": 6,
        "validation_steps": 6,
        "checkpointing_steps": 6,
        "recon_type": "l1",
        "kl_weight": 1e-6,
    },
    "val": {"batch_size": 8, "metrics": {"psnr": {"data_range": 1.0}, "ssim": {}}},
}

# A conditioned stage 2 over TINY_VAE's latents (2 channels).
TINY_LDM = {
    "name": "ldm",
    "model_type": "LDM_model",
    "report_to": "tensorboard",
    "seed": 5,
    "experiment_key": "run",
    "datasets": copy.deepcopy(TINY_VAE["datasets"]),
    "vae": {"pretrained": None},
    "condition": {"type": "image"},
    "network": {
        "type": "DiffusionUNet",
        "in_channels": 2,
        "out_channels": 2,
        "channels": [16, 32],
        "attention_levels": [False, True],
        "num_head_channels": [0, 16],
        "num_res_blocks": 1,
        "cross_attention_dim": 32,
        "norm_num_groups": 8,
    },
    "diffusion": {"num_train_timesteps": 100, "beta_schedule": "cosine"},
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "batch_size": 8,
        "max_train_steps": 40,
        "validation_steps": 20,
        "checkpointing_steps": 1000,
        "cond_drop_prob": 0.1,
        "snr_gamma": 5.0,
    },
    "val": {
        "batch_size": 8,
        "sampler": "ddim",
        "num_inference_steps": 4,
        "guidance_scale": 2.0,
        "num_samples": 4,
        "metrics": {"psnr": {"data_range": 1.0}},
    },
}

# A multi-task autoencoder with an RGB, a segmentation and a classification head on generated masks.
TINY_MULTITASK = {
    "name": "multitask",
    "model_type": "MultiTask_model",
    "report_to": "tensorboard",
    "seed": 11,
    "experiment_key": "run",
    "datasets": {
        "train": {
            "type": "SyntheticMasksDataset",
            "size": 512,
            "image_size": 16,
            "num_kinds": 2,
            "max_shapes": 1,
        },
        "val": {
            "type": "SyntheticMasksDataset",
            "size": 64,
            "image_size": 16,
            "num_kinds": 2,
            "max_shapes": 1,
        },
    },
    "network": {
        "type": "MultiTaskAutoencoder",
        "in_channels": 1,
        "latent_channels": 4,
        "base_channels": 8,
        "downsampling_steps": 1,
        "variational": False,
        "norm_num_groups": 4,
        "sample_size": 16,
        "heads": [
            {"type": "RGBHead", "name": "rgb", "out_channels": 1},
            {"type": "SegmentationHead", "name": "segmentation", "num_classes": 3},
            {"type": "ClassificationHead", "name": "class", "num_classes": 2, "hidden_channels": 16},
        ],
    },
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "batch_size": 16,
        "max_train_steps": 240,
        "validation_steps": 40,
        "checkpointing_steps": 1000,
        "losses": [
            {"type": "MSE", "key": "rgb", "target": "image", "weight": 1.0},
            {"type": "CrossEntropy", "key": "segmentation", "target": "mask", "weight": 0.5},
            {"type": "CrossEntropy", "key": "class", "target": "label", "weight": 0.5},
            {"type": "LatentStandardization", "weight": 0.01},
        ],
    },
    "val": {"gt_key": "image", "batch_size": 64, "metrics": {"psnr": {"data_range": 1.0}}},
}

# Generated masks for the multi-task -> LDM -> ControlNet chain.
MASK_DATA = {
    "train": {
        "type": "SyntheticMasksDataset",
        "size": 512,
        "image_size": 16,
        "num_kinds": 2,
        "max_shapes": 1,
    },
    "val": {"type": "SyntheticMasksDataset", "size": 8, "image_size": 16, "num_kinds": 2, "max_shapes": 1},
}

# An unconditional stage 2 over TINY_MULTITASK's latents (4 channels).
TINY_MASK_LDM = {
    "name": "ldm",
    "model_type": "LDM_model",
    "report_to": "tensorboard",
    "seed": 5,
    "experiment_key": "run",
    "datasets": MASK_DATA,
    "vae": {"pretrained": None},
    "condition": {"type": "none"},
    "network": {
        "type": "DiffusionUNet",
        "in_channels": 4,
        "out_channels": 4,
        "channels": [16, 32],
        "attention_levels": [False, False],
        "num_head_channels": [0, 0],
        "num_res_blocks": 1,
        "with_conditioning": False,
        "norm_num_groups": 8,
        "backend": "diffusers",
    },
    "diffusion": {"num_train_timesteps": 100, "beta_schedule": "cosine"},
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "batch_size": 32,
        "max_train_steps": 100,
        "validation_steps": 100,
        "checkpointing_steps": 1000,
        "cond_drop_prob": 0.0,
    },
    "val": {
        "gt_key": "image",
        "batch_size": 8,
        "sampler": "ddim",
        "num_inference_steps": 8,
        "num_samples": 4,
    },
}

# A ControlNet steering TINY_MASK_LDM with the masks.
TINY_CONTROLNET = {
    "name": "controlnet",
    "model_type": "ControlNet_model",
    "report_to": "tensorboard",
    "seed": 9,
    "experiment_key": "run",
    "datasets": MASK_DATA,
    "ldm": {"pretrained": None},
    "control": {"key": "mask", "conditioning_scale": 1.0},
    "network": {
        "type": "ControlNet",
        "conditioning_channels": 1,
        "conditioning_embedding_out_channels": [8, 16],
    },
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "batch_size": 32,
        "max_train_steps": 150,
        "validation_steps": 150,
        "checkpointing_steps": 150,
    },
    "val": {"gt_key": "image", "batch_size": 8, "num_samples": 4, "metrics": {"dice": {"threshold": 0.25}}},
}


# Two wavelengths, 9-pixel kernels, a small field and a narrow depth range, so the defocus blur
# fits the kernel and a tiny network learns it in a few dozen steps.
TINY_PSF = {
    "name": "psf",
    "model_type": "PSF_model",
    "report_to": "tensorboard",
    "seed": 3,
    "mixed_precision": "no",
    "experiment_key": "run",
    "deeplens": {
        "lens_file": "cooke_triplet_f50.json",
        "spp": 256,
        "kernel_size": 9,
        "wavelength_set_m": [500e-9, 600e-9],
        "fov": 0.005,
        "depth_min": 2.0,
        "depth_max": 2.5,
        "backend": "builtin",
    },
    "datasets": {"train": {"type": "DummyDataset", "size": 256}, "val": {"type": "DummyDataset", "size": 16}},
    "network": {"type": "PSF_MLP", "out_channels": 2, "kernel_size": 9, "hidden_dim": 64, "num_layers": 3},
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 3e-3, "adam_weight_decay": 0.0},
        "scheduler": {"type": "constant"},
        "loss": "1*MSE",
        "batch_size": 16,
        "max_train_steps": 60,
        "validation_steps": 30,
        "checkpointing_steps": 30,
    },
    "val": {"batch_size": 8, "num_images": 4, "metrics": {"psnr": {"crop": 0}}},
}
TINY_EMB_NETWORK = {
    "type": "PSF_Emb",
    "in_channels": 2,
    "kernel_size": 9,
    "latent_dim": 4,
    "embed_dim": 16,
    "encoder_channels": [16],
    "hidden_dim": 64,
}


def emb_config(config):
    config["model_type"] = "PSF_Emb_model"
    config["network"] = dict(TINY_EMB_NETWORK)
    config["train"].update(kl_weight=1e-4, interp_weight=1.0, interp_distance=0.3)
    return config


def in_folder(base: dict, tmp_path, **changes) -> dict:
    """A copy of `base` whose runs go under `tmp_path/experiments`, with top-level `changes`."""
    config = copy.deepcopy(base)
    config["path"]["root"] = str(tmp_path / "experiments")
    config.update(changes)
    return config


def ldm_config(tmp_path, vae_folder, **changes):
    config = copy.deepcopy(TINY_LDM)
    config["path"]["root"] = str(tmp_path / "experiments")
    config["vae"]["pretrained"] = vae_folder
    config.update(changes)
    return config


def multitask_config(tmp_path, **network):
    config = copy.deepcopy(TINY_MULTITASK)
    config["path"]["root"] = str(tmp_path / "experiments")
    config["network"].update(network)
    return config


def opt_with(**changes):
    """The smallest valid options, as an `Opt`, with `changes` (`a__b=v` sets `opt["a"]["b"]`)."""
    from utils.config.load import Opt

    data = {
        "name": "x",
        "model_type": "Denoise_model",
        "datasets": {"train": {"type": "DummyDataset", "size": 4}},
        "train": {"max_train_steps": 2},
    }
    for dotted, value in changes.items():
        block = data
        *parents, last = dotted.split("__")
        for p in parents:
            block = block.setdefault(p, {})
        block[last] = value
    return Opt(data)


def load_experiment(path, *overrides):
    """The checked options of the experiment at `path` (relative to the repository), with overrides."""
    import trainer
    from tests.helpers.runs import ROOT

    return trainer.load_config(os.path.join(ROOT, path), list(overrides))[0]
