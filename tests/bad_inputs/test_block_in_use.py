"""A library's error while an arch is built from its block names that block (utils/errors/in_use.py)."""

import pytest

from utils.config.load import Opt
from utils.errors.files import describe_failure

AUTOENCODER = {
    "type": "AutoencoderKL",
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": [8, 16],
    "norm_num_groups": 4,
    "latent_channels": 2,
    "layers_per_block": 1,
}


@pytest.mark.parametrize("where", ["network", "network_d"])
def test_a_value_the_library_refuses_names_the_block_it_was_built_from(where):
    from models.archs import define_network
    from utils.errors.in_use import BlockError

    opt = Opt({where: {**AUTOENCODER, "act_fn": "zzz"}})
    with pytest.raises(BlockError) as caught:
        define_network(opt[where])
    line = describe_failure(caught.value)
    assert line.startswith(
        f"AutoencoderKL_arch cannot be built from '{where}' (ValueError: activation function zzz"
    )
    assert "(unexpected" not in line


def test_a_full_memory_is_not_blamed_on_a_block():
    from utils.errors.in_use import block_in_use

    with pytest.raises(MemoryError), block_in_use("network", "X_arch"):
        raise MemoryError("cannot allocate")
