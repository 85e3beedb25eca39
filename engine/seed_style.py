"""The one place where plugin code written the seed's way is made to train correctly.

The design documents' roadmap (the README's "Seed-style plugins") appends networks to `self.models`,
calls the bare arch directly, calls `zero_grad()` / `backward` / `step` itself, and writes
`validate_step(batch, idx, lq_key, gt_key)` with `utils.log_metrics`. Each function here makes one of
these train as `add_network`, `self.step` and `self.log` do; new models need none of them.
"""

import inspect
from contextlib import contextmanager

from accelerate.optimizer import AcceleratedOptimizer

from engine.prepared_network import PreparedNetwork, handle_for
from utils.misc import scalar


def adopt_appended_networks(model, networks: list, named: dict) -> list[tuple[str, PreparedNetwork]]:
    """(name, handle) of each entry of `model.models`; `named` maps id(arch) -> (name, handle) for the
    networks registered with `add_network`.

    A network appended without `add_network` is named after the attribute that holds it (`net_vae`, the
    folder it is saved under; `model_<i>` when no attribute does), and that attribute is pointed at the
    network's `PreparedNetwork` handle, so the model's direct calls (`self.net_vae.encode(x)`) run
    through DDP (gradients synchronised) and autocast. Without it, each process trains alone."""
    adopted = []
    for i, network in enumerate(networks):
        arch = network.arch if isinstance(network, PreparedNetwork) else network
        if id(arch) in named:
            name, handle = named[id(arch)]
        else:
            attributes = [k for k, v in vars(model).items() if v is arch and k != "models"]
            name = attributes[0] if attributes else f"model_{i}"
            handle = handle_for(arch)
            for attribute in attributes:
                setattr(model, attribute, handle)
        taken = [n for n, _ in adopted]
        adopted.append((name if name not in taken else f"{name}_{i}", handle))
    return adopted


class AccumulationSafeOptimizer(AcceleratedOptimizer):
    """Accelerate's optimizer wrapper (steps only when gradients sync), with a `zero_grad` that keeps
    the gradients of an accumulation window's earlier micro-batches.

    A seed-style `optimize_parameters` calls `zero_grad()` at its top, every micro-batch; the engine
    clears gradients itself after every update. Without this, accumulating N micro-batches trains on
    the last one only."""

    def __init__(self, optimizer, device_placement=True, scaler=None):
        super().__init__(optimizer, device_placement=device_placement, scaler=scaler)
        self.gradients_pending = False  # set by the loop after each micro-batch that did not sync

    def zero_grad(self, set_to_none=None):
        if not self.gradients_pending:
            super().zero_grad(set_to_none=set_to_none)


def validate_step_caller(model):
    """`call(batch, validation_pass)` for the model's `validate_step`, its form read once from its
    signature: `validate_step(batch)`, or the seed's `validate_step(batch, idx, lq_key, gt_key)`, which
    gets the samples validated before this batch as `idx` and `val.lq_key` / `val.gt_key` (what it
    returns is not needed: the engine counts the samples itself). Without it, the seed's form fails
    on its missing arguments."""
    if len(inspect.signature(model.validate_step).parameters) == 1:
        return lambda batch, validation_pass: model.validate_step(batch)
    lq_key, gt_key = model.opt["val"]["lq_key"], model.opt["val"]["gt_key"]
    return lambda batch, validation_pass: model.validate_step(
        batch, validation_pass.samples_seen, lq_key, gt_key
    )


@contextmanager
def tracker_logs_into(accelerator, validation_pass):
    """Seed-style `validate_step` logs with `utils.log_metrics(..., accelerator, step)`, which ends in
    `accelerator.log`: for the length of the pass, this accelerator's `log` adds to the pass's means
    (weighted by the batch's samples) instead, so the pass reports each metric once, averaged, like
    those of `self.log`. Without it, each batch logs its own values."""

    def add_to_pass(values, step=None, log_kwargs=None):
        validation_pass.summary.add(
            {k: scalar(v) for k, v in values.items()}, n=validation_pass.batch_samples
        )

    accelerator.log = add_to_pass  # an attribute of this instance, shadowing the class's method
    try:
        yield
    finally:
        del accelerator.log
