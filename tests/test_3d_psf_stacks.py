"""Through-focus PSF stacks (utils/optics/through_focus.py, dataset/psf_stack_dataset.py): each plane is
the ray tracer's own PSF on that sensor plane, and the stack shows what the lens does along focus."""

import torch

from dataset.psf_stack_dataset import PSFStackDataset
from utils.optics.config import lens_from_config
from utils.optics.through_focus import through_focus_stack

BLOCK = {
    "spp": 256,
    "kernel_size": 16,
    "wavelength_set_m": [450e-9, 650e-9],
    "depth_min": 1.0,
    "depth_max": 20.0,
}


def test_each_plane_is_the_psf_traced_on_that_plane():
    lens = lens_from_config(BLOCK).lens
    point = torch.tensor([0.5, -0.3, -3000.0])
    focus = float(lens.best_focus_z(torch.tensor([3000.0]))[0])
    offsets = torch.tensor([-0.1, 0.0, 0.07])
    stack = through_focus_stack(lens, point, 0.55, focus, offsets, 16, 256, torch.Generator().manual_seed(4))
    assert stack.shape == (3, 16, 16)
    torch.testing.assert_close(stack.sum((1, 2)), torch.ones(3))
    for k, offset in enumerate(offsets.tolist()):  # the same rays, traced one plane at a time
        plane = lens.psf_batch(
            point[None],
            [0.55],
            ks=16,
            spp=256,
            generator=torch.Generator().manual_seed(4),
            sensor_z=focus + offset,
        )[0, 0]
        torch.testing.assert_close(stack[k], plane, atol=1e-6, rtol=1e-4)


def test_stacks_are_fixed_by_seed_and_show_the_chromatic_focal_shift():
    data = PSFStackDataset({**BLOCK, "size": 4, "num_planes": 9, "focus_range_m": 1e-4, "seed": 2})
    item = data[1]
    assert item["gt"].shape == (1, 9, 16, 16) and float(item["gt"].max()) == 1.0
    assert torch.equal(
        item["gt"],
        PSFStackDataset({**BLOCK, "size": 4, "num_planes": 9, "focus_range_m": 1e-4, "seed": 2})[1]["gt"],
    )
    assert item["coords"].shape == (4,) and round(float(item["coords"][3]), 4) in (0.45, 0.65)
    # on axis, blue and red come to focus on different planes (the Cooke triplet's focal shift)
    lens = data.simulator.lens
    focus = float(lens.best_focus_z(torch.tensor([5000.0]))[0])
    offsets = torch.linspace(-0.15, 0.15, 31)
    peaks = {
        w: through_focus_stack(lens, torch.tensor([0.0, 0.0, -5000.0]), w, focus, offsets, 16, 1024).amax(
            (1, 2)
        )
        for w in (0.45, 0.65)
    }
    assert int(peaks[0.45].argmax()) != int(peaks[0.65].argmax()), peaks
