"""scripts/latent_analysis/encoding.py: the plain loop's latents, in order, with names and groups; a bad
item stops it with its error."""

import numpy as np
import pytest
import torch

from models.archs import define_network
from scripts.latent_analysis.encoding import encode_sources
from scripts.latent_analysis.sources import Source
from utils.errors import DataError

NETWORK = {
    "type": "AutoencoderKL",
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": [8],
    "layers_per_block": 1,
    "latent_channels": 2,
    "norm_num_groups": 4,
}


class Images(torch.utils.data.Dataset):
    def __init__(self, images, prefix, broken=None):
        self.images, self.prefix, self.broken = images, prefix, broken

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        if idx == self.broken:
            raise DataError(f"'{self.prefix}{idx}.tif' is not a readable TIF file (truncated).")
        return {"gt": self.images[idx], "name": f"{self.prefix}{idx}"}


def test_latents_names_and_groups_match_a_plain_loop_in_order():
    torch.manual_seed(0)
    vae = define_network(NETWORK).eval()
    images = torch.rand(23, 1, 16, 16)
    sources = [
        Source(Images(images[:14], "a"), "gt", group="A"),
        Source(Images(images[14:], "b"), "gt", group="B"),
    ]
    encoded = encode_sources(vae, sources, batch_size=4, progress=False)
    with torch.no_grad():
        plain = torch.cat([vae.encode(images[i : i + 4]).latent_dist.mean for i in range(0, 23, 4)])
    np.testing.assert_allclose(encoded.latents, plain.numpy(), rtol=1e-5, atol=1e-6)
    assert encoded.names == [f"a{i}" for i in range(14)] + [f"b{i}" for i in range(9)]
    assert encoded.groups == ["A"] * 14 + ["B"] * 9
    assert encoded.thumbs.shape == (23, 48, 48)


def test_a_bad_item_stops_the_encoding_with_its_error():
    vae = define_network(NETWORK).eval()
    sources = [Source(Images(torch.rand(40, 1, 16, 16), "img", broken=21), "gt", group="A")]
    with pytest.raises(DataError, match="img21.tif"):
        encode_sources(vae, sources, batch_size=4, progress=False)
