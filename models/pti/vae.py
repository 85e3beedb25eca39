"""A VAE run started from a PTI-LDM-VAE file (`train.monai_checkpoint`): its weights now, its training
state when the run starts.

`autoencoder_epochN.pth` is the autoencoder's state dict alone; `checkpoint_epochN.pth` also holds the
discriminator, both Adam optimizers, the epoch, the step and the best validation loss (`files.py`).
The discriminator's weights load into the run's `network_d` (PTI-LDM-VAE's is MONAI's
`PatchDiscriminator` with channels 32, num_layers_d 3, norm INSTANCE); the rest is handed to the engine
by `training_state`, which the engine applies before the first step.
"""

from models.archs.monai_autoencoder_kl_arch import load_tensors_only
from models.pti.files import optimizer_moments, resume_numbers, strip_module
from utils.errors import ConfigError, DataError

# What PTI-LDM-VAE's VAE trainer calls its validation loss, and ours: lower is better.
BEST_METRIC = "val_loss"


class PTIVAEStart:
    def __init__(self, path: str, generator, discriminator=None):
        """Load the autoencoder (and, when the file and the run have one, the discriminator) from `path`."""
        if not hasattr(generator, "load_monai_checkpoint"):
            raise ConfigError(
                f"'train.monai_checkpoint' needs 'network.type: MonaiAutoencoderKL', not '{generator.config.model_type}'."
            )
        generator.load_monai_checkpoint(path)
        self.path, self.generator, self.discriminator = str(path), generator, discriminator
        content = load_tensors_only(path, "MONAI AutoencoderKL checkpoint")
        self.content = content if "autoencoder_state_dict" in content else {}
        self.loaded = ["the autoencoder"]
        saved_d = self.content.get("discriminator_state_dict")
        if saved_d is not None and discriminator is not None:
            _load_discriminator(discriminator, strip_module(saved_d), self.path)
            self.loaded.append("the discriminator")
        elif saved_d is not None:
            self.loaded.append("not its discriminator (no network_d block, or disc_weight 0)")

    def training_state(self) -> dict | None:
        """For `BaseModel.restored_training_state`: None for a weights-only file."""
        if not self.content:
            return None
        optimizers = [self._moments("optimizer_g_state_dict", self.generator.monai_autoencoder)]
        if self.discriminator is not None:
            optimizers.append(self._moments("optimizer_d_state_dict", self.discriminator.monai_discriminator))
        numbers = resume_numbers(self.content, self.path)
        best = numbers["best"]
        return {
            "source": self.path,
            "loaded": self.loaded,
            "optimizers": optimizers,
            "epoch": numbers["epoch"],
            "global_step": numbers["global_step"],
            "best": {"metric": BEST_METRIC, "mode": "min", "value": best} if best is not None else None,
        }

    def _moments(self, key: str, network):
        saved = self.content.get(key)
        return None if saved is None else optimizer_moments(saved, list(network.parameters()), self.path, key)


def _load_discriminator(arch, state: dict, path: str) -> None:
    expected = arch.monai_discriminator.state_dict()
    wrong = sorted(set(expected) ^ set(state)) or [k for k in state if state[k].shape != expected[k].shape]
    if wrong:
        raise DataError(
            f"The discriminator_state_dict of '{path}' does not fit 'network_d' (first misfit: '{wrong[0]}'); "
            "PTI-LDM-VAE's is a PatchDiscriminator with channels: 32, num_layers_d: 3, norm: INSTANCE."
        )
    arch.monai_discriminator.load_state_dict(state)
