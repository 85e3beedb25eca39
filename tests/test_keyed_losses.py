"""The keyed composite loss, the multi-task heads' scores, and the ControlNet's backend check."""

import pytest
import torch

from models.archs.autoencoder_outputs import DiagonalGaussianPosterior
from utils.errors import ConfigError
from utils.losses.keyed import KeyedLoss
from utils.metrics.segmentation import accuracy, segmentation_scores


def test_each_term_reads_its_key_and_target_and_is_weighted():
    loss = KeyedLoss(
        [
            {"type": "MSE", "key": "rgb", "target": "image", "weight": 2.0},
            {"type": "CrossEntropy", "key": "segmentation", "target": "mask", "weight": 0.5},
            {"type": "CrossEntropy", "key": "class", "target": "label", "weight": 0.25},
            {"type": "KLD", "weight": 0.1},
            {"type": "LatentStandardization"},
        ]
    )
    latent = torch.randn(2, 4, 3, 3) * 3 + 1
    outputs = {
        "rgb": torch.ones(2, 1, 4, 4),
        "segmentation": torch.zeros(2, 3, 4, 4),
        "class": torch.zeros(2, 5),
        "latent": latent,
        "latent_dist": DiagonalGaussianPosterior(torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3)),
    }
    batch = {
        "image": torch.zeros(2, 1, 4, 4),
        "mask": torch.zeros(2, 4, 4).long(),
        "label": torch.tensor([0, 4]),
    }
    values = loss(outputs, batch)
    assert values["MSE_rgb"].item() == pytest.approx(1.0)
    assert values["CrossEntropy_segmentation"].item() == pytest.approx(torch.log(torch.tensor(3.0)).item())
    assert values["CrossEntropy_class"].item() == pytest.approx(torch.log(torch.tensor(5.0)).item())
    assert values["KLD"].item() == pytest.approx(0.0)  # the posterior is N(0, I) itself
    standard = (latent.mean() ** 2 + (latent.std() - 1) ** 2).item()
    assert values["LatentStandardization"].item() == pytest.approx(standard, rel=1e-5)
    expected = (
        2.0 + 0.5 * values["CrossEntropy_segmentation"] + 0.25 * values["CrossEntropy_class"] + standard
    )
    assert values["all"].item() == pytest.approx(float(expected), rel=1e-5)


def test_segmentation_scores_per_class_and_accuracy():
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    target[1, :, :2] = 2
    perfect = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()
    scores = segmentation_scores(perfect, target, prefix="val_seg_")
    assert scores["val_seg_dice"] == 1.0 and scores["val_seg_iou_c2"] == 1.0
    swapped = perfect[:, [0, 2, 1]]  # classes 1 and 2 confused: 0 where present, 1 where absent from both
    assert segmentation_scores(swapped, target)["dice_c1"] == pytest.approx(0.0)
    assert accuracy(torch.tensor([[0.0, 1.0], [2.0, 0.0]]), torch.tensor([1, 1])) == 0.5


def test_a_diffusers_controlnet_over_a_monai_unet_is_refused_naming_the_monai_one():
    from models.archs.diffusion_unet_arch import DiffusionUNet_arch, DiffusionUNet_config
    from models.controlnet.pipeline import check_controlnet_type

    unet = DiffusionUNet_arch(
        DiffusionUNet_config(
            channels=[8, 8],
            attention_levels=[False, False],
            num_head_channels=[8, 8],  # MONAI's middle block always attends
            num_res_blocks=1,
            with_conditioning=False,
            norm_num_groups=4,
            backend="monai",
        )
    )
    with pytest.raises(ConfigError, match="'network.type: MonaiControlNet'"):
        check_controlnet_type(unet, "ControlNet")
    check_controlnet_type(unet, "MonaiControlNet")
