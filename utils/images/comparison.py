"""A validation picture a person can read: input | reconstruction | |difference|, one row per sample.

Readable for small images such as 32-px PSFs too: panels upscaled, the difference in its own colour map
with a colour bar, and an optional log scale (`comparison_grid` says how).
"""

import numpy as np

from utils.images.grid import to_numpy

MIN_PANEL = 128  # pixels: small images are upscaled to at least this
LOG_DECADES = 4.0
COLUMNS = ("input", "reconstruction", "|difference|")


def _display(x: np.ndarray) -> np.ndarray:
    """(C, H, W) -> what imshow draws: RGB for three channels, else the channel mean (grey)."""
    return x.transpose(1, 2, 0) if x.shape[0] == 3 else x.mean(axis=0)


def _scaled(x: np.ndarray, lo: float, hi: float, log_scale: bool) -> np.ndarray:
    if log_scale:
        floor = hi * 10.0**-LOG_DECADES if hi > 0 else 1e-12
        x = np.log10(np.clip(x, floor, None))
        lo, hi = np.log10(floor), np.log10(max(hi, floor * 10))
    return np.clip((x - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)


def comparison_grid(inputs, reconstructions, log_scale: bool = False, columns=COLUMNS) -> np.ndarray:
    """(N, C, H, W) inputs and reconstructions (a volume's middle slice is shown) -> an (H', W', 3) float
    RGB image in [0, 1] with column labels and a colour bar for the difference column.

    Three things make a plain tiled grid unreadable for small images, and each is fixed here:
    - size: a 32-px image is a few millimetres on screen; panels are upscaled by nearest neighbour (no
      smoothing that would invent detail) to at least `MIN_PANEL` pixels;
    - the difference: scaled like the images, a good reconstruction's difference is black; here it has
      its own colour map, scaled to the largest difference in the picture, with a colour bar;
    - dynamic range: a PSF's halo is 1e-3 of its peak and invisible on a linear scale; `log_scale=True`
      shows log10 of the images over `LOG_DECADES` decades below each row's peak.
    Input and reconstruction of a row share one scale (the input's range), so a wrong brightness shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = to_numpy(inputs), to_numpy(reconstructions)
    if x.ndim == 5:
        x, y = x[:, :, x.shape[2] // 2], y[:, :, y.shape[2] // 2]
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(
            f"inputs and reconstructions must be equal (N, C, H, W) arrays, got {x.shape} and {y.shape}"
        )
    n, _, h, w = x.shape
    difference = np.abs(y - x).mean(axis=1)  # one magnitude per pixel, whatever the channel count
    diff_max = float(difference.max()) or 1.0
    panel = max(MIN_PANEL, h, w)  # each panel's longer side in pixels (nearest-neighbour upscaled)
    dpi = 100
    width, height = 3 * panel * w / max(h, w) + 90, n * panel * h / max(h, w) + 30
    fig, axes = plt.subplots(n, 3, figsize=(width / dpi, height / dpi), dpi=dpi, squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.86, top=1 - 26 / height, bottom=0.01, wspace=0.04, hspace=0.04)
    for row in range(n):
        lo, hi = float(x[row].min()), float(x[row].max())
        for col, image in enumerate((x[row], y[row])):
            axes[row, col].imshow(
                _display(_scaled(image, lo, hi, log_scale)), cmap="gray", interpolation="nearest"
            )
        shown = axes[row, 2].imshow(
            difference[row], cmap="magma", vmin=0.0, vmax=diff_max, interpolation="nearest"
        )
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    scale = " (log10)" if log_scale else ""
    for col, title in enumerate(columns):
        axes[0, col].set_title(title + (scale if col < 2 else ""), fontsize=9)
    bar = fig.add_axes((0.88, 0.05, 0.025, 0.9 - 26 / height))
    fig.colorbar(shown, cax=bar).ax.tick_params(labelsize=7)
    # The canvas's own pixel size: recomputing it from the figure's inches can round one pixel off
    # (panels that are not square), and the buffer would not reshape.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba()).copy()
    plt.close(fig)
    return rgba[..., :3].astype(np.float32) / 255.0


def as_batch(grid: np.ndarray) -> np.ndarray:
    """An (H, W, 3) picture as the (1, 3, H, W) batch that `log_image` takes (it stays as it is drawn)."""
    return grid.transpose(2, 0, 1)[None]
