"""A perceptual (LPIPS-style) loss on VGG16 features whose weights come from a local file, never a download.

    perceptual = PerceptualLoss("weights/vgg16.safetensors", data_range=(0.0, 1.0)).to(device)
    loss = perceptual(reconstruction, target)

Keep it out of the trained and saved models: its weights are frozen and already on disk.
`save_vgg16_weights(path, state_dict=None)` writes a weights file.
"""

import os

import safetensors.torch
import torch
from torch import nn

from utils.errors import DataError

# VGG16's configuration "D": conv widths, "M" a 2x2 max-pool. Each conv is followed by a ReLU.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# Index in `features` of the ReLU after each named conv (torchvision's numbering).
VGG16_TAPS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    """torchvision's `vgg16().features`, by hand, layer for layer in torchvision's order, so a torchvision
    VGG16 state dict (`vgg16-397923af.pth`) loads into it unchanged. LPIPS and MONAI's perceptual loss
    fetch their networks at run time, which fails offline, and torchvision is not a dependency here."""

    def __init__(self):
        super().__init__()
        layers, in_channels = [], 3
        for entry in VGG16_LAYOUT:
            if entry == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, entry, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                in_channels = entry
        self.features = nn.Sequential(*layers)
        for module in self.features:
            if isinstance(module, nn.Conv2d):  # torchvision's initialisation, for randomly made files
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, taps: list[int]) -> list[torch.Tensor]:
        """The activations after the layers numbered in `taps` (ascending)."""
        outputs = []
        for index, layer in enumerate(self.features[: taps[-1] + 1]):
            x = layer(x)
            if index in taps:
                outputs.append(x)
        return outputs


class PerceptualLoss(nn.Module):
    """Compares unit-normalised feature maps at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3: for each
    layer the squared difference summed over channels and averaged over positions, then summed over
    layers (LPIPS without its learned per-channel weights). Inputs are images in `data_range`, 1 or 3
    channels; 3D volumes ([B, C, D, H, W]) are compared on slices along each of the three axes (2.5D)."""

    def __init__(
        self,
        weights_path: str | os.PathLike,
        layers: tuple[str, ...] = tuple(VGG16_TAPS),
        data_range: tuple[float, float] = (0.0, 1.0),
        slices_per_axis_3d: int = 8,
    ):
        super().__init__()
        unknown = [name for name in layers if name not in VGG16_TAPS]
        if unknown:
            raise DataError(f"Unknown perceptual layers {unknown}; choose among {', '.join(VGG16_TAPS)}.")
        self.taps = sorted(VGG16_TAPS[name] for name in layers)
        self.data_range = data_range
        self.slices_per_axis_3d = slices_per_axis_3d
        self.backbone = VGG16Features()
        self.backbone.load_state_dict(_read_vgg16_weights(weights_path, self.backbone.state_dict()))
        self.backbone.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        # The backbone stays in eval mode whatever the surrounding model does; it is never trained.
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.dim() == 5:
            return (
                sum(
                    self._loss_2d(
                        _slices(pred, axis, self.slices_per_axis_3d),
                        _slices(target, axis, self.slices_per_axis_3d),
                    )
                    for axis in (2, 3, 4)
                )
                / 3.0
            )
        return self._loss_2d(pred, target)

    def _loss_2d(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        features_pred = self.backbone(self._to_vgg_input(pred), self.taps)
        features_target = self.backbone(self._to_vgg_input(target), self.taps)
        loss = pred.new_zeros(())
        for a, b in zip(features_pred, features_target):
            difference = (_unit_normalise(a) - _unit_normalise(b)).pow(2).sum(dim=1)
            loss = loss + difference.mean()
        return loss

    def _to_vgg_input(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] not in (1, 3):
            raise DataError(
                f"PerceptualLoss takes 1- or 3-channel images; these have {images.shape[1]} channels."
            )
        low, high = self.data_range
        images = (images - low) / (high - low)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images - self.mean) / self.std


def save_vgg16_weights(path: str | os.PathLike, state_dict: dict | None = None) -> str:
    """Write a VGG16 feature weights file in safetensors: `state_dict`'s `features.*` (a torchvision VGG16
    state dict, say), or the randomly initialised weights of a new backbone (for tests) when none is given."""
    weights = state_dict if state_dict is not None else VGG16Features().state_dict()
    features = {key: tensor.contiguous() for key, tensor in weights.items() if key.startswith("features.")}
    safetensors.torch.save_file(features, os.fspath(path))
    return os.fspath(path)


def _read_vgg16_weights(path: str | os.PathLike, expected: dict) -> dict:
    if not os.path.isfile(path):
        raise DataError(
            f"The perceptual loss weights file '{path}' does not exist; give a local VGG16 weights file "
            f"(safetensors, or a torch state dict such as torchvision's vgg16-397923af.pth): nothing is "
            f"downloaded."
        )
    if os.fspath(path).endswith(".safetensors"):
        weights = safetensors.torch.load_file(os.fspath(path))
    else:
        try:
            weights = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # an unsafe pickle, or not a torch file at all
            raise DataError(
                f"The perceptual loss weights file '{path}' cannot be read with "
                f"torch.load(weights_only=True): it needs full pickle loading, which can run arbitrary "
                f"code, or it is not a torch file."
            ) from error
    features = {key: tensor for key, tensor in weights.items() if key.startswith("features.")}
    mismatched = [
        key for key in expected if key not in features or features[key].shape != expected[key].shape
    ]
    if mismatched:
        raise DataError(
            f"The perceptual loss weights file '{path}' does not hold VGG16 features: '{mismatched[0]}' and "
            f"{len(mismatched) - 1} more weights are missing or of another shape."
        )
    return features


def _unit_normalise(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def _slices(volume: torch.Tensor, axis: int, count: int) -> torch.Tensor:
    """`count` evenly spaced 2D slices across `axis` of [B, C, D, H, W], folded into the batch."""
    positions = torch.linspace(0, volume.shape[axis] - 1, min(count, volume.shape[axis])).round().long()
    chosen = volume.index_select(axis, positions.to(volume.device)).movedim(axis, 1)  # [B, S, C, ., .]
    return chosen.reshape(-1, *chosen.shape[2:])
