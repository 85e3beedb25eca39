"""`type: MonaiAutoencoderKL`: MONAI's KL autoencoder (2D or 3D).

The config keys are those of MONAI's generative `AutoencoderKL` configs plus MONAI's own extras, so
existing JSON configs carry over, and `from_monai_checkpoint` / `load_monai_checkpoint` load existing
MONAI training checkpoints. The methods are the shared autoencoder interface of
`models/archs/autoencoder_outputs.py`. MONAI's attention blocks need the `einops` package.
"""

import os
import pickle

import numpy as np
import torch
from monai.networks.nets import AutoencoderKL as MonaiAutoencoderKL
from transformers import PretrainedConfig, PreTrainedModel

from models.archs.autoencoder_outputs import (
    AutoencoderOutput,
    DiagonalGaussianPosterior,
    EncoderOutput,
    activate_output,
    check_output_activation,
)
from models.archs.config_signature import keys_from_signature, signature_keys
from utils.errors import ConfigError, DataError

# Checkpoints that saved a numpy float (a best validation loss, say) need these to unpickle; they rebuild
# plain numbers and run no code, so allowing them keeps `weights_only` safe.
NUMPY_SCALAR_GLOBALS = [np._core.multiarray.scalar, np.dtype] + [
    getattr(np.dtypes, name) for name in np.dtypes.__all__
]


def load_tensors_only(path: str | os.PathLike, what: str):
    """`torch.load` of a MONAI training run's `.pth` with `weights_only=True` (tensors, numbers and the numpy
    scalars those runs store beside them): full pickle loading can run arbitrary code, so a file that
    needs it is refused in one sentence instead. `what` names the file's role in the messages."""
    if not os.path.isfile(path):
        raise DataError(f"The {what} '{path}' does not exist.")
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise DataError(
            f"'{path}' holds Python objects that only full pickle loading restores, which can run arbitrary "
            "code, so it is not loaded; in a session you trust, re-save its state dicts alone "
            "(torch.save(model.state_dict(), path))."
        ) from error


class MonaiAutoencoderKL_config(PretrainedConfig):
    """Defaults: widths 64-128-256, 4 latent channels, no per-level attention.

    `attention_levels` defaults to no attention at every level. `num_res_blocks` is one number for every
    level or one per level. `scaling_factor` defaults to 1.0 (no scaling); VAE_model stores 1 / std of the
    trained latents here, so inference never re-measures it on a different batch. `output_activation`
    (tanh, sigmoid or null) bounds the decoded image.
    """

    model_type = "MonaiAutoencoderKL"

    @keys_from_signature
    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: list[int] = (64, 128, 256),
        latent_channels: int = 4,
        num_res_blocks: int | list[int] = 2,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        attention_levels: list[bool] | None = None,
        with_encoder_nonlocal_attn: bool = True,
        with_decoder_nonlocal_attn: bool = True,
        use_checkpoint: bool = False,
        use_convtranspose: bool = False,
        include_fc: bool = True,
        use_combined_linear: bool = False,
        use_flash_attention: bool = False,
        scaling_factor: float = 1.0,
        output_activation: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = list(channels)
        self.num_res_blocks = num_res_blocks if isinstance(num_res_blocks, int) else list(num_res_blocks)
        self.attention_levels = list(attention_levels or [False] * len(self.channels))


class MonaiAutoencoderKL_arch(PreTrainedModel):
    config_class = MonaiAutoencoderKL_config
    main_input_name = "x"

    def __init__(self, config: MonaiAutoencoderKL_config):
        super().__init__(config)
        _check_config(config)
        self.monai_autoencoder = MonaiAutoencoderKL(**_monai_kwargs(config))
        self.post_init()

    def _init_weights(self, module):
        # Keep MONAI's own initialisation: transformers' default would redraw every conv from N(0, 0.02).
        pass

    # --- the shared autoencoder interface -------------------------------------------------------------

    @property
    def size_divisor(self) -> int:
        """What every spatial size of an input must be a multiple of: the encoder halves it at every level but the last."""
        return 2 ** (len(self.config.channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def encode(self, x: torch.Tensor) -> EncoderOutput:
        # MONAI's encode returns the mean and the standard deviation sigma (not a log-variance): the KL is
        # 0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2), and sigma where the log-variance goes would train
        # against a wrong KL term.
        mean, sigma = self.monai_autoencoder.encode(x)
        return EncoderOutput(latent_dist=DiagonalGaussianPosterior.from_sigma(mean, sigma))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return activate_output(self.monai_autoencoder.decode(z), self.config.output_activation)

    def forward(
        self, x: torch.Tensor, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> AutoencoderOutput:
        posterior = self.encode(x).latent_dist
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        return AutoencoderOutput(reconstruction=self.decode(latents), latents=latents, latent_dist=posterior)

    def scale_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.config.scaling_factor

    def unscale_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.config.scaling_factor

    def last_decoder_layer(self) -> torch.nn.Parameter:
        # The decoder ends GroupNorm -> Convolution; the MONAI Convolution keeps its conv as `.conv`.
        return self.monai_autoencoder.decoder.blocks[-1].conv.weight

    # --- PTI-LDM-VAE checkpoints -----------------------------------------------------------------------

    @classmethod
    def from_monai_checkpoint(cls, path: str | os.PathLike, **config_kwargs) -> "MonaiAutoencoderKL_arch":
        """Build the arch from config keys (those the checkpoint was trained with) and load `path` into it."""
        model = cls(MonaiAutoencoderKL_config(**config_kwargs))
        model.load_monai_checkpoint(path)
        return model.eval()  # as `from_pretrained` returns it

    def load_monai_checkpoint(self, path: str | os.PathLike) -> None:
        """Load a MONAI AutoencoderKL state dict (`autoencoder_epochN.pth`), or a PTI-LDM-VAE
        `checkpoint_epochN.pth` (through its `autoencoder_state_dict` key), into this arch, e.g. one built
        from a YAML `network` block. Files are read with `torch.load(weights_only=True)`: no arbitrary
        pickle."""
        state_dict = _read_monai_state_dict(path)
        expected = self.monai_autoencoder.state_dict()
        missing = [key for key in expected if key not in state_dict]
        unexpected = [key for key in state_dict if key not in expected]
        if missing or unexpected:
            raise DataError(
                f"'{path}' does not fit this MonaiAutoencoderKL config: {len(missing)} weights missing "
                f"(first: {missing[:2]}) and {len(unexpected)} unexpected (first: {unexpected[:2]}); "
                f"give the network keys the checkpoint was trained with (channels, num_res_blocks, "
                f"attention_levels, ...)."
            )
        for key, tensor in state_dict.items():
            if tensor.shape != expected[key].shape:
                raise DataError(
                    f"'{path}' does not fit this MonaiAutoencoderKL config: '{key}' has shape "
                    f"{tuple(tensor.shape)} in the file and {tuple(expected[key].shape)} in the model; "
                    f"give the network keys the checkpoint was trained with (channels, latent_channels, ...)."
                )
        self.monai_autoencoder.load_state_dict(state_dict)


def _read_monai_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    content = load_tensors_only(path, "MONAI AutoencoderKL checkpoint")
    if isinstance(content, dict) and "autoencoder_state_dict" in content:
        content = content["autoencoder_state_dict"]
    if not (isinstance(content, dict) and content and all(torch.is_tensor(v) for v in content.values())):
        found = list(content)[:6] if isinstance(content, dict) else type(content).__name__
        raise DataError(
            f"'{path}' is neither a MONAI AutoencoderKL state dict nor a PTI-LDM-VAE checkpoint with an "
            f"'autoencoder_state_dict' key (it holds {found})."
        )
    # A model saved while wrapped in DistributedDataParallel has every key under 'module.'.
    if all(key.startswith("module.") for key in content):
        content = {key[len("module.") :]: tensor for key, tensor in content.items()}
    return content


def _check_config(config: MonaiAutoencoderKL_config) -> None:
    check_output_activation(config.output_activation)
    if config.spatial_dims not in (2, 3):
        raise ConfigError(
            f"'network.spatial_dims' is {config.spatial_dims}; MonaiAutoencoderKL takes 2 or 3."
        )
    if len(config.attention_levels) != len(config.channels):
        raise ConfigError(
            f"'network.attention_levels' has {len(config.attention_levels)} entries but 'network.channels' "
            f"has {len(config.channels)}; give one true/false per level."
        )
    for width in config.channels:
        if width % config.norm_num_groups:
            raise ConfigError(
                f"'network.channels' entry {width} is not a multiple of 'network.norm_num_groups' "
                f"({config.norm_num_groups}); group normalisation needs every width divisible by it."
            )


def _monai_kwargs(config: MonaiAutoencoderKL_config) -> dict:
    """Every key of the config's signature but `scaling_factor` and `output_activation` (ours) is an
    argument of MONAI's AutoencoderKL."""
    return {
        key: getattr(config, key)
        for key in signature_keys(MonaiAutoencoderKL_config)
        if key not in ("scaling_factor", "output_activation")
    }
