"""The one place where plugin code written the seed's way is made to train correctly.

The design documents' roadmap (the README's "Seed-style plugins") writes a model like this:

    self.net_vae = define_network(opt.network)
    self.models.append(self.net_vae)            # no name given
    ...
    def optimize_parameters(self):
        for optimizer in self.optimizers:
            optimizer.zero_grad()               # at the top, every micro-batch
        out = self.net_vae.encode(x)            # a direct call of the bare arch
        self.accelerator.backward(loss)
        for optimizer in self.optimizers:
            optimizer.step()

Three things would go wrong as written, and each is handled here, by name:

- `adopt_appended_networks`: a network appended without `add_network` is named after the attribute
  that holds it (`net_vae`, the folder it is saved under; `model_<i>` when no attribute does), and
  that attribute is pointed at the network's `PreparedNetwork` handle, so the model's direct calls run
  through DDP (gradients synchronised) and autocast. Without it, each process trains alone.
- `AccumulationSafeOptimizer`: the optimizers a model receives ignore `zero_grad()` while gradients
  of an accumulation window's earlier micro-batches are pending; the engine clears gradients itself
  after every update. Without it, accumulating N micro-batches trains on the last one only.
- `validate_step_caller` and `tracker_logs_into`: the seed's `validate_step(batch, idx, lq_key, gt_key)`
  is called in that form, and the metrics it logs through `utils.log_metrics` are averaged over the
  validation pass like those of `self.log`. Without them, each batch would log its own values.

New models call `self.add_network(name, arch)` and `self.step(loss, optimizer)` instead, and write
`validate_step(batch)` with `self.log`: they need none of these.
"""

import inspect
from contextlib import contextmanager

from accelerate.optimizer import AcceleratedOptimizer

from engine.prepared_network import PreparedNetwork, handle_for
from utils.misc import scalar


def adopt_appended_networks(model, networks: list, named: dict) -> list[tuple[str, PreparedNetwork]]:
    """(name, handle) of each entry of `model.models`; `named` maps id(arch) -> (name, handle) for the
    networks registered with `add_network`."""
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
    the gradients of an accumulation window's earlier micro-batches (see the module docstring)."""

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
    returns is not needed: the engine counts the samples itself)."""
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
    (weighted by the batch's samples) instead, so the pass reports each metric once, averaged."""

    def add_to_pass(values, step=None, log_kwargs=None):
        validation_pass.summary.add(
            {k: scalar(v) for k, v in values.items()}, n=validation_pass.batch_samples
        )

    accelerator.log = add_to_pass  # an attribute of this instance, shadowing the class's method
    try:
        yield
    finally:
        del accelerator.log
