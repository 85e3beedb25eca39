"""`type: AutoencoderKL`: diffusers' 2D KL autoencoder (the Stable Diffusion VAE), as a transformers model.

The config keys are diffusers' own `AutoencoderKL` arguments, so a diffusers VAE folder converts both
ways (`from_diffusers`, `export_diffusers`). The methods are the shared autoencoder interface of
`models/archs/autoencoder_outputs.py`.
"""

import os

import diffusers
import torch
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


class AutoencoderKL_config(PretrainedConfig):
    """Defaults are the Stable Diffusion VAE's: widths 128-256-512-512, 2 blocks per level.

    `scaling_factor` defaults to Stable Diffusion's 0.18215, which is right for its VAE and a placeholder
    for any other: the VAE training model replaces it with 1 / std of the trained latents.
    `down_block_types` / `up_block_types` default to plain (attention-free) blocks, one per width.
    The middle block has self-attention (`mid_block_add_attention`); for attention at a resolution
    level, name that level's blocks `AttnDownEncoderBlock2D` / `AttnUpDecoderBlock2D` in
    `down_block_types` / `up_block_types` (the up list runs from the deepest level back to full
    resolution).
    `output_activation` (tanh, sigmoid or null) bounds the decoded image; diffusers has no such key, so
    it stays ours and a VAE with one is not exported to the diffusers format.
    `gradient_checkpointing: true` recomputes each block's activations in the backward pass instead of
    keeping them: less memory for about one more forward pass per step; the gradients are the same.
    """

    model_type = "AutoencoderKL"

    @keys_from_signature
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        block_out_channels: list[int] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        down_block_types: list[str] | None = None,
        up_block_types: list[str] | None = None,
        mid_block_add_attention: bool = True,
        sample_size: int = 512,
        scaling_factor: float = 0.18215,
        shift_factor: float | None = None,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
        force_upcast: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        output_activation: str | None = None,
        gradient_checkpointing: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.block_out_channels = list(block_out_channels)
        levels = len(self.block_out_channels)
        self.down_block_types = list(down_block_types or ["DownEncoderBlock2D"] * levels)
        self.up_block_types = list(up_block_types or ["UpDecoderBlock2D"] * levels)


class AutoencoderKL_arch(PreTrainedModel):
    config_class = AutoencoderKL_config
    main_input_name = "x"

    def __init__(self, config: AutoencoderKL_config):
        super().__init__(config)
        _check_config(config)
        self.diffusers_vae = diffusers.AutoencoderKL(**_diffusers_kwargs(config))
        if config.gradient_checkpointing:
            self.diffusers_vae.enable_gradient_checkpointing()
        self.post_init()

    def _init_weights(self, module):
        # Keep diffusers' own initialisation: transformers' default would redraw every conv from N(0, 0.02).
        pass

    # --- the shared autoencoder interface -------------------------------------------------------------

    @property
    def size_divisor(self) -> int:
        """What every spatial size of an input must be a multiple of: the encoder halves it at every level but the last."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def encode(self, x: torch.Tensor) -> EncoderOutput:
        diffusers_posterior = self.diffusers_vae.encode(x).latent_dist
        return EncoderOutput(
            latent_dist=DiagonalGaussianPosterior(diffusers_posterior.mean, diffusers_posterior.logvar)
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return activate_output(self.diffusers_vae.decode(z).sample, self.config.output_activation)

    def forward(
        self, x: torch.Tensor, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> AutoencoderOutput:
        posterior = self.encode(x).latent_dist
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        return AutoencoderOutput(reconstruction=self.decode(latents), latents=latents, latent_dist=posterior)

    def scale_latents(self, z: torch.Tensor) -> torch.Tensor:
        return (z - (self.config.shift_factor or 0.0)) * self.config.scaling_factor

    def unscale_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.config.scaling_factor + (self.config.shift_factor or 0.0)

    def last_decoder_layer(self) -> torch.nn.Parameter:
        return self.diffusers_vae.decoder.conv_out.weight

    # --- diffusers format ------------------------------------------------------------------------------

    @classmethod
    def from_diffusers(cls, folder: str | os.PathLike, subfolder: str | None = None) -> "AutoencoderKL_arch":
        """Start from a local diffusers-format VAE folder (`config.json` + weights); nothing is downloaded.

        `subfolder="vae"` reads the VAE of a whole pipeline folder (e.g. a Stable Diffusion checkpoint).
        """
        vae_folder = os.path.join(folder, subfolder) if subfolder else os.fspath(folder)
        if not os.path.isfile(os.path.join(vae_folder, "config.json")):
            raise DataError(
                f"'{vae_folder}' is not a diffusers VAE folder: it has no config.json (for a whole pipeline "
                f"folder, pass subfolder='vae')."
            )
        pretrained = diffusers.AutoencoderKL.from_pretrained(vae_folder, local_files_only=True)
        config = AutoencoderKL_config(**{key: pretrained.config[key] for key in _diffusers_keys()})
        model = cls(config)
        model.diffusers_vae.load_state_dict(pretrained.state_dict())
        return model.eval()  # as `from_pretrained` returns it

    def export_diffusers(self, folder: str | os.PathLike) -> str:
        """Write a folder `diffusers.AutoencoderKL.from_pretrained` loads with identical outputs, carrying
        the trained scaling_factor."""
        if self.config.output_activation is not None:
            raise ConfigError(
                f"This AutoencoderKL decodes through 'output_activation: {self.config.output_activation}', "
                "which diffusers' AutoencoderKL has no key for, so its export would decode differently; "
                "load it with AutoencoderKL_arch.from_pretrained instead."
            )
        # The scaling factor (and shift) may have been set on our config after training: copy it over.
        self.diffusers_vae.register_to_config(**_diffusers_kwargs(self.config))
        self.diffusers_vae.save_pretrained(folder, safe_serialization=True)
        return os.fspath(folder)


# The keys of the config's signature that diffusers.AutoencoderKL does not take.
_OURS = ("output_activation", "gradient_checkpointing")


def _diffusers_keys() -> list[str]:
    return [key for key in signature_keys(AutoencoderKL_config) if key not in _OURS]


def _diffusers_kwargs(config: AutoencoderKL_config) -> dict:
    # Every other key of the config's signature is an argument of diffusers.AutoencoderKL.
    return {key: getattr(config, key) for key in _diffusers_keys()}


def _check_config(config: AutoencoderKL_config) -> None:
    check_output_activation(config.output_activation)
    levels = len(config.block_out_channels)
    for key in ("down_block_types", "up_block_types"):
        if len(getattr(config, key)) != levels:
            raise ConfigError(
                f"'network.{key}' has {len(getattr(config, key))} entries but 'network.block_out_channels' "
                f"has {levels}; give one block type per width."
            )
    for width in config.block_out_channels:
        if width % config.norm_num_groups:
            raise ConfigError(
                f"'network.block_out_channels' entry {width} is not a multiple of 'network.norm_num_groups' "
                f"({config.norm_num_groups}); group normalisation needs every width divisible by it."
            )
