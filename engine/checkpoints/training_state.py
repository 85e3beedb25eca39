"""The trainer's own checkpoint state, written as JSON and safetensors instead of pickle.

Accelerate stores registered objects with `torch.save` and reloads them with `weights_only=False`,
which would unpickle whatever a user-given checkpoint folder contains. The loop's position, the LR
schedules and the EMA weights are plain numbers and tensors, so they go to `trainer_state.json` and
`ema_<i>.safetensors`, which load without executing anything. `TrainingState` is the loop's position
(step, epoch, batch in the epoch), so that a resumed run continues mid-epoch.
"""

import json
import os

import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "trainer_state.json"


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_training_state(folder: str, loop_state: dict, schedulers: list, emas: list) -> None:
    # LambdaLR keeps its lambdas out of state_dict() (they are None there), so what remains is numbers.
    state = {"loop": loop_state, "schedulers": [_plain(s.state_dict()) for s in schedulers]}
    with open(os.path.join(folder, STATE_FILE), "w") as f:
        json.dump(state, f, indent=1)
    for i, ema in enumerate(emas):
        ema_state = ema.state_dict()
        tensors = {
            f"shadow.{j}": p.detach().contiguous().cpu() for j, p in enumerate(ema_state["shadow_params"])
        }
        settings = {k: v for k, v in ema_state.items() if k != "shadow_params"}
        save_file(
            tensors, os.path.join(folder, f"ema_{i}.safetensors"), metadata={"settings": json.dumps(settings)}
        )


def load_training_state(folder: str, schedulers: list, emas: list) -> dict:
    """Restore schedulers and EMAs in place; returns the loop state."""
    with open(os.path.join(folder, STATE_FILE)) as f:
        state = json.load(f)
    if len(state["schedulers"]) != len(schedulers):
        raise ValueError(
            f"the checkpoint has {len(state['schedulers'])} LR schedules but the model has {len(schedulers)} optimizers"
        )
    for scheduler, scheduler_state in zip(schedulers, state["schedulers"]):
        scheduler.load_state_dict(scheduler_state)
    for i, ema in enumerate(emas):
        path = os.path.join(folder, f"ema_{i}.safetensors")
        if not os.path.isfile(path):
            raise ValueError(f"'train.ema' is on but the checkpoint has no '{os.path.basename(path)}'")
        from safetensors import safe_open

        with safe_open(path, "pt") as handle:
            settings = json.loads(handle.metadata()["settings"])
        tensors = load_file(path)
        device = ema.shadow_params[0].device if ema.shadow_params else "cpu"
        shadow = [tensors[f"shadow.{j}"].to(device) for j in range(len(tensors))]
        ema.load_state_dict({**settings, "shadow_params": shadow})
    return state["loop"]


class TrainingState:
    def __init__(self):
        self.global_step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self.skipped_steps = 0

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        for key in vars(self):
            setattr(self, key, int(state.get(key, 0)))
