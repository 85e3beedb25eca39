import pytest
import torch
from torch import nn

from engine.prepared_network import MethodDispatch, PreparedNetwork
from models.archs import define_network


class Counting(nn.Module):
    """Stands in for the DDP/autocast-wrapped module: counts the calls that go through it."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def forward(self, method, *args, **kwargs):
        self.calls.append(method)
        return self.inner(method, *args, **kwargs)


def test_calls_and_arch_methods_route_through_the_prepared_module():
    arch = define_network({"type": "TinyDenoiser", "hidden_channels": 4, "num_layers": 3})
    prepared = Counting(MethodDispatch(arch))
    net = PreparedNetwork(prepared, arch)
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(net(x), arch(x))
    net.forward(x)
    # library methods and attributes go straight to the arch
    assert net.config.hidden_channels == 4
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in arch.parameters())
    net.eval()
    assert not arch.training
    assert prepared.calls == ["__call__", "forward"]


@pytest.mark.e2e
def test_mixed_precision_bf16_run_keeps_fp32_weights(tiny_config, tmp_path):
    from safetensors.torch import load_file

    from tests.conftest import read_scalars, run_folder, run_trainer

    tiny_config["mixed_precision"] = "bf16"
    tiny_config["train"].update(max_train_steps=20, checkpointing_steps=20, validation_steps=20)
    assert run_trainer(tiny_config, tmp_path) == 0
    weights = load_file(f"{run_folder(tiny_config)}/final/net_g/model.safetensors")
    assert all(w.dtype == torch.float32 for w in weights.values())
    losses = read_scalars(run_folder(tiny_config))["train/all"]
    assert losses[20] < losses[1]
