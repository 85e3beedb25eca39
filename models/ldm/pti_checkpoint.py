"""Load a PTI-LDM-VAE stage-2 checkpoint into `DiffusionUNet` (MONAI backend) and the condition projector.

    train:
      monai_checkpoint: runs/ldm/trained_weights/checkpoint_epoch50.pth

`read_pti_ldm_checkpoint` says which files load; files are read with `torch.load(weights_only=True)`.
`PTILDMStart` loads them into a training run and keeps the checkpoint's optimizer, epoch, step and best
validation loss for the engine (`training_state`).
"""

import torch

from models.archs.monai_autoencoder_kl_arch import load_tensors_only
from models.pti.files import optimizer_moments, resume_numbers
from utils.errors import ConfigError, DataError


def _strip_prefix(state: dict, prefix: str) -> dict:
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix) :]: tensor for key, tensor in state.items()}
    return state


def read_pti_ldm_checkpoint(path: str) -> tuple[dict, dict | None]:
    """(UNet state dict, projector state dict or None) from either kind of file PTI-LDM-VAE saves:

    - `checkpoint_epochN.pth`: a dict with `unet_state_dict` (MONAI `DiffusionModelUNet` keys) and
      `condition_projector_state_dict` (a plain `nn.Linear(latent_channels, cross_attention_dim)`:
      `weight`, `bias`), beside the epoch, optimizer state and best validation loss;
    - `diffusion_unet.pt`: the UNet's state dict alone."""
    return split_pti_ldm_checkpoint(
        load_tensors_only(path, "PTI-LDM-VAE checkpoint (train.monai_checkpoint)"), path
    )


def split_pti_ldm_checkpoint(content, path: str) -> tuple[dict, dict | None]:
    """`read_pti_ldm_checkpoint` of a file's content already read."""
    if not isinstance(content, dict):
        raise DataError(
            f"'{path}' holds a {type(content).__name__}, not a UNet state dict or checkpoint dict."
        )
    projector = None
    if "unet_state_dict" in content:
        unet, projector = content["unet_state_dict"], content.get("condition_projector_state_dict")
    else:
        unet = content
    if not (unet and all(torch.is_tensor(v) for v in unet.values())):
        raise DataError(
            f"'{path}' is neither a DiffusionModelUNet state dict nor a PTI-LDM-VAE checkpoint with an "
            f"'unet_state_dict' key (it holds {list(content)[:6]})."
        )
    # Saved while wrapped in DistributedDataParallel, or from PTI-LDM-VAE's wrapper module: strip the prefix.
    unet = _strip_prefix(_strip_prefix(unet, "module."), "unet.")
    if projector is not None:
        projector = _strip_prefix(projector, "module.")
        if len(projector) == 2 and not {"weight", "bias"} <= set(projector):
            projector = {key.rsplit(".", 1)[-1]: tensor for key, tensor in projector.items()}
    return unet, projector


def _load(module, state: dict, what: str, path: str, hint: str) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (
            f"'{wrong[0]}' has shape {tuple(state[wrong[0]].shape)} in the file and "
            f"{tuple(expected[wrong[0]].shape)} here"
            if wrong
            else f"{len(missing)} weights missing (first: {missing[:2]}), {len(unexpected)} unexpected "
            f"(first: {unexpected[:2]})"
        )
        raise DataError(f"The {what} of '{path}' does not fit: {detail}; {hint}")
    module.load_state_dict(state)


def load_pti_ldm_checkpoint(path: str, unet_arch, projector_arch=None, states=None) -> None:
    """Load `path` into a DiffusionUNet_arch (MONAI backend) and, when the file has one, its projector.
    PTI-LDM-VAE's projector adds no position embedding to the condition tokens, so it loads only into an
    image-mode projector with `position_embedding: false`; the learned null token of classifier-free
    guidance has no counterpart there and keeps its initial value. `states`: the file's
    (UNet, projector) state dicts when already read."""
    if unet_arch.uses_diffusers:
        raise ConfigError(
            "'train.monai_checkpoint' holds MONAI DiffusionModelUNet weights: set 'network.backend: monai'."
        )
    unet_state, projector_state = states or read_pti_ldm_checkpoint(str(path))
    _load(
        unet_arch.unet,
        unet_state,
        "UNet",
        path,
        "give the 'network' keys it was trained with (channels, attention_levels, num_head_channels, ...).",
    )
    if projector_state is None or projector_arch is None:
        return
    config = projector_arch.config
    if config.mode != "image" or config.position_embedding:
        raise ConfigError(
            f"'{path}' holds PTI-LDM-VAE's image-condition projector, a linear layer without position "
            "embedding: set 'condition.type: image' and 'condition.position_embedding: false'."
        )
    _load(projector_arch.proj, projector_state, "condition projector", path, "check 'cross_attention_dim'.")


class PTILDMStart:
    """`train.monai_checkpoint` of an LDM run: the weights loaded at set-up, the training state kept for
    `BaseModel.restored_training_state` (None for `diffusion_unet.pt`, which holds weights only)."""

    def __init__(self, model):
        self.path = str(model.hp["monai_checkpoint"])
        projector = model.projector.arch if model.projector is not None else None
        self.content = load_tensors_only(self.path, "PTI-LDM-VAE checkpoint (train.monai_checkpoint)")
        unet_state, projector_state = split_pti_ldm_checkpoint(self.content, self.path)
        load_pti_ldm_checkpoint(self.path, model.unet.arch, projector, (unet_state, projector_state))
        self.unet, self.projector = model.unet.arch.unet, projector
        self.has_projector = projector_state is not None
        loaded = "UNet and condition projector" if self.has_projector and projector else "UNet"
        model.logger.info(f"Loaded the PTI-LDM-VAE stage-2 {loaded} weights of {self.path}.")

    def training_state(self) -> dict | None:
        if "unet_state_dict" not in self.content:
            return None
        optimizers = [None]
        saved = self.content.get("optimizer_state_dict")
        if saved is not None:
            # Its Adam runs over the UNet's parameters, then the projector's (weight, bias); the null
            # token of classifier-free guidance has no counterpart and starts without moments.
            params = list(self.unet.parameters())
            if self.has_projector:
                params += (
                    [self.projector.proj.weight, self.projector.proj.bias] if self.projector else [None, None]
                )
            optimizers = [optimizer_moments(saved, params, self.path, "optimizer_state_dict")]
        numbers = resume_numbers(self.content, self.path)
        best = numbers["best"]
        return {
            "source": self.path,
            "loaded": [],
            "optimizers": optimizers,
            "epoch": numbers["epoch"],
            "global_step": numbers["global_step"],
            "best": {"metric": "val_loss", "mode": "min", "value": best} if best is not None else None,
        }
