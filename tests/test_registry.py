import pytest
import torch

from models.archs import define_network, ensure_post_init
from tests.helpers.scripts import make_plugins
from utils.config.load import Opt
from utils.errors import ConfigError, PluginError

SEED_STYLE_ARCH = """
import torch.nn as nn
from transformers import PreTrainedModel, PretrainedConfig


class SeedVAE_config(PretrainedConfig):
    model_type = "SeedVAE"

    def __init__(self, in_channels=1, latent_dim=4, **kwargs):
        super().__init__(**kwargs)
        self.in_channels = in_channels
        self.latent_dim = latent_dim


class SeedVAE_arch(PreTrainedModel):
    config_class = SeedVAE_config

    def __init__(self, config):
        super().__init__(config)
        self.config = config
        self.enc = nn.Conv2d(config.in_channels, config.latent_dim, 3, padding=1)

    def forward(self, x):
        return self.enc(x)
"""


def test_discovery_is_sorted_and_recursive(plugin_root):
    reg = make_plugins(
        plugin_root,
        {"b_arch.py": "class B: pass\n", "sub/a_arch.py": "class A: pass\n", "x.py": "class X: pass\n"},
    )
    assert [p.name for p in reg.files] == ["b_arch.py", "a_arch.py"]
    assert reg.names() == ["A", "B"]
    assert reg.get("A").__name__ == "A"


def test_duplicate_class_names_both_files(plugin_root):
    reg = make_plugins(
        plugin_root, {"one_arch.py": "class Same: pass\n", "two_arch.py": "class Same: pass\n"}
    )
    with pytest.raises(PluginError, match=r"one_arch.py.*two_arch.py"):
        reg.get("Same")


def test_real_registries_find_builtin_plugins():
    from dataset import find_dataset_class
    from models import find_model_class

    assert find_model_class("Denoise_model").__name__ == "Denoise_model"
    assert find_dataset_class("DummyDataset")({"size": 3})[2] == {"x": 2}
    with pytest.raises(PluginError, match="Did you mean 'DummyDataset'"):
        find_dataset_class("DumyDataset")


def test_define_network_pairs_config_and_does_not_mutate():
    block = Opt({"type": "TinyDenoiser", "in_channels": 1, "hidden_channels": 4, "num_layers": 3})
    before = block.to_dict()
    net1, net2 = define_network(block), define_network(block)  # called twice on the same block
    assert block.to_dict() == before
    assert type(net1).__name__ == "TinyDenoiser_arch" and net1.config.hidden_channels == 4
    assert net2.config.num_layers == 3


def test_define_network_errors():
    with pytest.raises(
        PluginError, match=r"No arch named 'TinyDenoizer_arch'.*Did you mean 'TinyDenoiser_arch'"
    ):
        define_network({"type": "TinyDenoizer"})
    with pytest.raises(ConfigError, match="needs a 'type'"):
        define_network({"in_channels": 1})
    with pytest.raises(
        ConfigError, match=r"'network.hiden_channels' for TinyDenoiser_config.*'hidden_channels'"
    ):
        define_network({"type": "TinyDenoiser", "hiden_channels": 4})


def test_arch_without_config_class_is_rejected(plugin_root, monkeypatch):
    import models.archs as archs

    text = SEED_STYLE_ARCH.replace("    config_class = SeedVAE_config\n", "")
    monkeypatch.setattr(archs, "ARCH_REGISTRY", make_plugins(plugin_root, {"seedless_arch.py": text}))
    with pytest.raises(PluginError, match=r"must set `config_class = SeedVAE_config`"):
        archs.find_arch("SeedVAE")


def test_seed_style_arch_without_post_init_saves_and_reloads(plugin_root, monkeypatch, tmp_path):
    import models.archs as archs

    monkeypatch.setattr(
        archs, "ARCH_REGISTRY", make_plugins(plugin_root, {"seedvae_arch.py": SEED_STYLE_ARCH})
    )
    torch.manual_seed(0)
    net = archs.define_network({"type": "SeedVAE", "in_channels": 1, "latent_dim": 3})
    # PyTorch's own init is kept (transformers' post_init would have redrawn it with std 0.02).
    assert net.enc.weight.std() > 0.05
    net.save_pretrained(tmp_path / "saved")
    _, arch_cls = archs.find_arch("SeedVAE")
    loaded = arch_cls.from_pretrained(tmp_path / "saved")
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(loaded(x), net(x))
    ensure_post_init(arch_cls)  # idempotent
