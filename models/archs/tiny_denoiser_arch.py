"""A small residual CNN: the example arch of the README's plugin walkthrough.

Written as the README's seed-style arch (config + arch pair, no `post_init()` call: the arch registry
completes that for transformers 5). Real arches wrap library networks instead.
"""

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from models.archs.config_signature import keys_from_signature


class TinyDenoiser_config(PretrainedConfig):
    model_type = "TinyDenoiser"

    @keys_from_signature
    def __init__(self, in_channels=1, hidden_channels=32, num_layers=4, **kwargs):
        super().__init__(**kwargs)


class TinyDenoiser_arch(PreTrainedModel):
    config_class = TinyDenoiser_config

    def __init__(self, config):
        super().__init__(config)
        layers = [nn.Conv2d(config.in_channels, config.hidden_channels, 3, padding=1), nn.SiLU()]
        for _ in range(config.num_layers - 2):
            layers += [nn.Conv2d(config.hidden_channels, config.hidden_channels, 3, padding=1), nn.SiLU()]
        layers.append(nn.Conv2d(config.hidden_channels, config.in_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, noisy):
        # Predict the noise and subtract it: the identity is the starting point, which trains fast.
        return noisy - self.body(noisy)
