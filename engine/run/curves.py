"""One figure of how training went, read back from the run's TensorBoard event files.

`read_scalars(run_dir)` merges every event file under `<run>/logs` (a resumed run adds files; the
value written last for a step wins, so the replayed steps after a resume are not drawn twice);
`write_training_summary(run_dir)` draws the training losses (log scale), the learning rate and each
validation scalar into `<run>/training_summary.png`, for users who never start TensorBoard.
"""

import glob
import os

import numpy as np

SUMMARY_NAME = "training_summary.png"
# Logged under train/ but not losses: drawn in their own panel or not at all.
NOT_LOSSES = {"train/lr", "train/grad_norm", "train/samples_per_second", "train/skipped_steps"}


def read_scalars(run_dir: str, logging_dir: str = "logs") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (steps, values)} of every scalar in the run's event files, sorted by step."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    # Every scalar event of every file, ordered by when it was written: a resumed launch writes a new
    # file that replays some steps, and its values must win. File names cannot give that order (their
    # counter suffix sorts "10" before "9").
    events = []
    pattern = os.path.join(run_dir, logging_dir, "**", "events.out.tfevents.*")
    for path in glob.glob(pattern, recursive=True):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = float(value.simple_value)
                elif value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "scalars":
                    number = float(tensor_util.make_ndarray(value.tensor))
                else:
                    continue
                events.append((event.wall_time, int(event.step), value.tag, number))
    series: dict[str, dict[int, float]] = {}
    for _, step, tag, number in sorted(events, key=lambda e: e[0]):
        series.setdefault(tag, {})[step] = number
    return {
        tag: (np.array(sorted(points)), np.array([points[s] for s in sorted(points)]))
        for tag, points in series.items()
    }


def panels(scalars: dict) -> list[tuple[str, list[str], bool]]:
    """(title, tags, log_y) of each panel: losses together, the LR, then one per validation scalar."""
    losses = sorted(t for t in scalars if t.startswith("train/") and t not in NOT_LOSSES)
    result = []
    if losses:
        positive = all((scalars[t][1] > 0).all() for t in losses)
        result.append(("training losses", losses, positive))
    if "train/lr" in scalars:
        result.append(("learning rate", ["train/lr"], False))
    result += [(tag, [tag], False) for tag in sorted(t for t in scalars if not t.startswith("train/"))]
    return result


def write_training_summary(run_dir: str, logging_dir: str = "logs", out: str | None = None) -> str | None:
    """Draw the run's curves into `<run>/training_summary.png`; None when the run logged no scalars."""
    scalars = read_scalars(run_dir, logging_dir)
    layout = panels(scalars)
    if not layout:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    columns = min(3, len(layout))
    rows = -(-len(layout) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax, (title, tags, log_y) in zip(axes.flat, layout):
        for tag in tags:
            steps, values = scalars[tag]
            # A single validation point is a marker, not an invisible line of length zero.
            ax.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3, label=tag)
        if log_y:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(tags) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(layout) :]:
        ax.axis("off")
    fig.suptitle(os.path.join(*os.path.normpath(os.path.abspath(run_dir)).split(os.sep)[-2:]), fontsize=11)
    fig.tight_layout()
    out = out or os.path.join(run_dir, SUMMARY_NAME)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def summarize_run(accelerator, run_dir: str, logging_dir: str, logger) -> None:
    """At the end of training: write `<run>/training_summary.png` and say where (main process only)."""
    if not accelerator.is_main_process:
        return
    path = write_training_summary(run_dir, logging_dir)
    if path:
        logger.info(f"Training curves: {path}")
