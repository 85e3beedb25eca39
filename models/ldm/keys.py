"""The YAML keys of `LDM_model`'s `vae`, `diffusion`, `train` and `val` blocks (the `condition` block's
are in `conditioning.py`): declared once, with default, type, range and help; the config check, its
errors and the README tables come from here."""

from models.ldm.sampling import SAMPLERS
from models.ldm.schedules import BETA_SCHEDULES, PREDICTION_TYPES
from models.shared_keys import PATCH_KEYS
from utils.config.schema import Key

VAE_KEYS = {
    "pretrained": Key(
        None,
        "str",
        "A VAE run's `final/net_g` (or `final/`) folder, or `<root>/<name>/latest/final/net_g` (the newest "
        "finished run of that experiment); exactly one of this and `vae.monai_checkpoint`.",
        nullable=True,
    ),
    "monai_checkpoint": Key(
        None,
        "str",
        "A MONAI autoencoder `.pth` (state dict or `autoencoder_state_dict`), with `vae.network`.",
        nullable=True,
    ),
    "network": Key(None, "block", "The MonaiAutoencoderKL keys of `vae.monai_checkpoint`.", nullable=True),
    "scale_factor": Key(
        "auto",
        "any",
        "`auto` (stored; measured for a MONAI checkpoint), `stored`, `compute` (1/std of training latents) "
        "or a number.",
    ),
    "scale_batches": Key(8, "int", "Training batches used to measure the scale factor.", minimum=1),
}
DIFFUSION_KEYS = {
    "num_train_timesteps": Key(1000, "int", "Training timesteps.", minimum=1),
    "beta_schedule": Key("scaled_linear", "str", "Noise schedule.", tuple(BETA_SCHEDULES)),
    "beta_start": Key(
        None,
        "float",
        "Default per schedule: 1e-4 (linear, quadratic), 0.00085 (scaled_linear).",
        nullable=True,
    ),
    "beta_end": Key(
        None, "float", "Default per schedule: 0.02 (linear, quadratic), 0.012 (scaled_linear).", nullable=True
    ),
    "prediction_type": Key("epsilon", "str", "What the UNet predicts.", tuple(PREDICTION_TYPES)),
}
TRAIN_KEYS = {
    **PATCH_KEYS,
    "cond_drop_prob": Key(
        0.1,
        "float",
        "Probability of replacing a condition by the learned null token.",
        minimum=0.0,
        maximum=1.0,
    ),
    "snr_gamma": Key(
        None, "float", "Min-SNR-gamma loss weighting (e.g. 5); off when null.", minimum=0.0, nullable=True
    ),
    "cache_latents": Key(False, "bool", "Pre-encode the training set's latents once into the run folder."),
    "monai_checkpoint": Key(
        None,
        "str",
        "A PTI-LDM-VAE stage-2 `.pth` (`unet_state_dict` + `condition_projector_state_dict`, or "
        "`diffusion_unet.pt`) to continue training from or generate with (`network.type: DiffusionUNet`, MONAI); "
        "a `checkpoint_epochN.pth` also restores its optimizer, step, epoch and best loss.",
        nullable=True,
    ),
}
VAL_KEYS = {
    "sampler": Key("ddim", "str", "Sampler of the validation samples.", SAMPLERS),
    "num_inference_steps": Key(50, "int", "Sampling steps.", minimum=1),
    "guidance_scale": Key(
        1.0,
        "float",
        "Classifier-free guidance (1: the conditional prediction).",
        minimum=0.0,
    ),
    "num_samples": Key(8, "int", "Conditions sampled per validation.", minimum=0),
    "num_images": Key(8, "int", "Rows in the logged grid.", minimum=1),
    "baselines": Key(
        True,
        "bool",
        "Score two baselines beside the samples: the mean training target and the same model with the "
        "conditions shuffled across the batch (a model that ignores its condition scores the same).",
    ),
    "baseline_batches": Key(16, "int", "Training batches averaged into the mean-target baseline.", minimum=1),
}
