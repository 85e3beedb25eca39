"""How a ControlNet's output enters the frozen diffusers UNet (`control.fusion`), behind one small interface.

A ControlNet arch returns a `Steering`; `Steering.run(unet, ...)` calls the diffusers
`UNet2DConditionModel` with it. A second backend (another ControlNet arch) plugs in by returning a
`Steering` too; nothing else of `ControlNet_model` or its pipeline knows the fusion modes.

    residual  down/mid residuals added to the UNet's skip connections (diffusers' own ControlNet inputs)
    gated     the same residuals, each level times a learned gate that starts at zero
    film      per level a scale and a shift of the UNet's skip features: h * (1 + gamma) + beta
    concat    the encoded control at latent size, entering the UNet's input convolution through extra
              input channels (their weights start at zero): conv_in([z, e]) = conv_in(z) + W_e * e

With every control's weight at 0 each mode adds exact zeros (a residual or shift of 0, a scale of 1),
so the UNet's output is the LDM's bit for bit.
"""

from contextlib import ExitStack
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FUSIONS = ("residual", "gated", "film", "concat")


@dataclass
class Steering:
    """What the ControlNet(s) give the UNet: additive residuals (`down`, `mid`); or, with `film`, each
    skip's and the mid block's (gamma, beta) stacked on the channel axis; or `input`, added to the
    output of the UNet's input convolution."""

    down: list[torch.Tensor] | None = None
    mid: torch.Tensor | None = None
    film: bool = False
    input: torch.Tensor | None = None

    def run(self, unet, sample, timesteps, **inputs) -> torch.Tensor:
        kwargs = {}
        with ExitStack() as hooks:
            if self.film:
                for handle in _film_hooks(unet, self.down, self.mid):
                    hooks.callback(handle.remove)
            elif self.down is not None:
                kwargs = {
                    "down_block_additional_residuals": self.down,
                    "mid_block_additional_residual": self.mid,
                }
            if self.input is not None:
                added = self.input
                handle = unet.conv_in.register_forward_hook(lambda _m, _a, out: out + added)
                hooks.callback(handle.remove)
            return unet(sample, timesteps, **inputs, **kwargs, return_dict=False)[0]


def combine(parts: list[Steering]) -> Steering:
    """Several controls' steering summed (each already times its own weight), as diffusers'
    MultiControlNetModel sums residuals; for FiLM the gammas and betas sum alike."""
    first = parts[0]
    if len(parts) == 1:
        return first

    def total(tensors):
        return None if tensors[0] is None else torch.stack(tensors).sum(0)

    down = None if first.down is None else [total(level) for level in zip(*(p.down for p in parts))]
    return type(first)(down, total([p.mid for p in parts]), first.film, total([p.input for p in parts]))


def _modulate(h: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
    gamma, beta = film.chunk(2, dim=1)
    return h * (1 + gamma) + beta


def _film_hooks(unet, films: list[torch.Tensor], mid: torch.Tensor) -> list:
    """FiLM of the skip features. diffusers' UNet takes only additive residuals, and h * gamma + beta
    needs the skip features h that exist only inside its forward, so hooks modulate them where they are
    consumed: each up block receives its skips as `res_hidden_states_tuple` (the last skips first, as
    `UNet2DConditionModel.forward` pops them), and the mid block's output is modulated as diffusers adds
    the mid residual there. The down path itself is left as it is, as with residual addition."""
    handles, end = [], len(films)
    for block in unet.up_blocks:
        start = end - len(block.resnets)
        levels = films[start:end]
        end = start

        def pre_hook(_module, args, kwargs, levels=levels):
            skips = kwargs["res_hidden_states_tuple"]
            kwargs["res_hidden_states_tuple"] = tuple(_modulate(h, f) for h, f in zip(skips, levels))
            return args, kwargs

        handles.append(block.register_forward_pre_hook(pre_hook, with_kwargs=True))
    handles.append(unet.mid_block.register_forward_hook(lambda _m, _a, out: _modulate(out, mid)))
    return handles


def film_convs(convs: torch.nn.ModuleList) -> torch.nn.ModuleList:
    """Zero 1x1 convolutions giving (gamma, beta) per level: twice the channels of diffusers' zero convs."""
    doubled = torch.nn.ModuleList()
    for conv in convs:
        new = torch.nn.Conv2d(conv.in_channels, 2 * conv.out_channels, kernel_size=1)
        torch.nn.init.zeros_(new.weight)
        torch.nn.init.zeros_(new.bias)
        doubled.append(new)
    return doubled


def input_conv(embedding: torch.Tensor, weight: torch.Tensor, conv_in: torch.nn.Conv2d) -> torch.Tensor:
    """The extra input channels' share of the UNet's input convolution (no bias: conv_in has its own)."""
    return F.conv2d(embedding, weight, stride=conv_in.stride, padding=conv_in.padding)
