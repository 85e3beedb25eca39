"""The key names of PTI-LDM-VAE's training checkpoints, and their training state read into ours.

Its VAE trainer saves `checkpoint_epochN.pth` as {epoch, autoencoder_state_dict, discriminator_state_dict,
optimizer_g_state_dict, optimizer_d_state_dict, best_val_loss, total_step}; its LDM trainer saves
{epoch, unet_state_dict, condition_projector_state_dict, optimizer_state_dict, best_val_loss,
total_step}. `epoch` is the last finished epoch (its trainers resume at epoch + 1), `total_step` the
optimizer steps so far and `best_val_loss` the lowest validation loss (lower is better). The
optimizers are `torch.optim.Adam` over the networks' `parameters()`, in that order: the UNet's, then
the projector's for stage 2.
"""

import math

import torch

from utils.errors import DataError

VAE_KEYS = (
    "autoencoder_state_dict",
    "discriminator_state_dict",
    "optimizer_g_state_dict",
    "optimizer_d_state_dict",
)
LDM_KEYS = ("unet_state_dict", "condition_projector_state_dict", "optimizer_state_dict")
COMMON_KEYS = ("epoch", "best_val_loss", "total_step")
ADAM_STATE = ("exp_avg", "exp_avg_sq")


def strip_module(state: dict) -> dict:
    """A state dict saved while wrapped in DistributedDataParallel has every key under 'module.'."""
    if state and all(key.startswith("module.") for key in state):
        return {key[len("module.") :]: value for key, value in state.items()}
    return state


def optimizer_moments(saved: dict, params: list, path: str, what: str) -> dict:
    """{parameter: its Adam state (step, exp_avg, exp_avg_sq)} from a torch optimizer `state_dict` whose
    parameters were `params`, in this order; a parameter the file has no state for (or given as None)
    is left out."""
    if not isinstance(saved, dict) or not {"state", "param_groups"} <= set(saved):
        raise DataError(
            f"The '{what}' of '{path}' is not a torch optimizer state dict (state, param_groups)."
        )
    indices = [i for group in saved["param_groups"] for i in group["params"]]
    if len(indices) != len(params):
        raise DataError(
            f"The '{what}' of '{path}' holds {len(indices)} parameters but the network has {len(params)}; "
            "give the network keys it was trained with."
        )
    moments = {}
    for index, param in zip(indices, params):
        state = saved["state"].get(index)
        if not state or param is None:  # None: a parameter this run does not have
            continue
        for key in ADAM_STATE:
            if key not in state:
                raise DataError(
                    f"The '{what}' of '{path}' has no '{key}' for parameter {index}: it is not Adam's state."
                )
            if tuple(state[key].shape) != tuple(param.shape):
                raise DataError(
                    f"The '{what}' of '{path}' has {key} of shape {tuple(state[key].shape)} for parameter "
                    f"{index}, whose shape here is {tuple(param.shape)}; give the network keys it was trained with."
                )
        moments[param] = dict(state)
    return moments


def resume_numbers(content: dict, path: str) -> dict:
    """The epoch to run next, the step reached and the best validation loss of a training checkpoint
    (each None when the file does not hold it)."""
    epoch, step, best = content.get("epoch"), content.get("total_step"), content.get("best_val_loss")
    for name, value in (("epoch", epoch), ("total_step", step)):
        if value is not None and not (
            isinstance(value, int) or (torch.is_tensor(value) and value.numel() == 1)
        ):
            raise DataError(
                f"'{name}' of '{path}' is {value!r}; a training checkpoint stores a whole number."
            )
    best = float(best) if best is not None else None
    if best is not None and not math.isfinite(best):
        best = None  # a run that never validated stores no usable best
    return {
        "epoch": int(epoch) + 1 if epoch is not None else None,
        "global_step": int(step) if step is not None else None,
        "best": best,
    }
