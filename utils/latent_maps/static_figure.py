"""Static scatter plots of a 2-D map (matplotlib, no display needed): PNG, SVG and PDF for papers."""

import numpy as np

# Colour-blind-safe (Okabe-Ito), then matplotlib's tab20 for more groups.
MARKER_ALPHA = 0.8
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def group_colors(groups) -> dict[str, str]:
    """One colour per group, in sorted group order, shared by the static and interactive maps."""
    names = sorted({str(g) for g in groups})
    if len(names) <= len(PALETTE):
        return dict(zip(names, PALETTE))
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab20"]
    return {name: to_hex(cmap(i % 20)) for i, name in enumerate(names)}


def spread_points(coords: np.ndarray, count: int) -> list[int]:
    """Indices of `count` points spread over the map: farthest-point sampling from the point nearest the
    centre, so the thumbnail panel shows the map's different regions, not one dense cluster."""
    count = min(count, len(coords))
    if count <= 0:
        return []
    chosen = [int(np.argmin(np.linalg.norm(coords - coords.mean(axis=0), axis=1)))]
    distance = np.linalg.norm(coords - coords[chosen[0]], axis=1)
    while len(chosen) < count:
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(coords - coords[nxt], axis=1))
    return chosen


def map_figure(coords, groups, title: str, thumbs=None, thumbnail_count: int = 0):
    """A matplotlib Figure: the scatter coloured by group with a legend, and optionally a panel of the
    thumbnails of `thumbnail_count` spread-out points, numbered on the scatter."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    coords = np.asarray(coords)
    groups = np.asarray([str(g) for g in groups])
    colors = group_colors(groups)
    picked = spread_points(coords, thumbnail_count) if thumbs is not None else []
    figure = Figure(figsize=(9.0 if picked else 6.0, 5.0))
    if picked:
        grid = figure.add_gridspec(1, 2, width_ratios=(3, 2), wspace=0.05)
        ax = figure.add_subplot(grid[0])
    else:
        ax = figure.add_subplot()
    size = float(np.clip(3000 / max(len(coords), 1), 4, 40))
    for name, color in colors.items():
        mask = groups == name
        ax.scatter(
            *coords[mask].T, s=size, c=color, label=f"{name} ({mask.sum()})", alpha=MARKER_ALPHA, linewidths=0
        )
    for number, index in enumerate(picked, start=1):
        ax.annotate(str(number), coords[index], fontsize=7, fontweight="bold", ha="center", va="bottom")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=max(1.0, 20 / size) ** 0.5, loc="best", frameon=True)
    if picked:
        columns = int(np.ceil(np.sqrt(len(picked))))
        rows = int(np.ceil(len(picked) / columns))
        panel = grid[1].subgridspec(rows, columns, wspace=0.05, hspace=0.25)
        for number, index in enumerate(picked, start=1):
            tile = figure.add_subplot(panel[(number - 1) // columns, (number - 1) % columns])
            tile.imshow(thumbs[index], cmap="gray", vmin=0, vmax=255)
            tile.set_title(f"{number}: {groups[index]}", fontsize=6, color=colors[groups[index]])
            tile.axis("off")
    return figure


def save_static_map(
    coords, groups, stem: str, title: str, thumbs=None, thumbnail_count: int = 0, dpi: int = 300
) -> list[str]:
    """Write `<stem>.png`, `.svg` and `.pdf`; returns their paths."""
    figure = map_figure(coords, groups, title, thumbs, thumbnail_count)
    paths = []
    for suffix in ("png", "svg", "pdf"):
        path = f"{stem}.{suffix}"
        figure.savefig(path, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    return paths


def map_image(coords, groups, title: str, dpi: int = 100) -> np.ndarray:
    """The scatter as an (H, W, 3) float image in [0, 1], for a tracker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = map_figure(coords, groups, title)
    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(dpi)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return rgba[..., :3].astype(np.float32) / 255.0
