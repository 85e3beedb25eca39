"""Where a run writes: `path.root/name/experiment_key`, the same on every process, never outside `path.root`.

`name`, `experiment_key` and `tracker_project_name` each become one folder name: characters other
than letters, digits and `._+-` are replaced by `_` (`my exp/v1` -> `my_exp_v1`), so a separator
can never add a level. A name made only of dots (`.`, `..`) would still point at `path.root` or above
it (and let checkpoint rotation delete another run's `checkpoint-*` folders), so it is refused.
"""

import os
import re

from utils.errors import ConfigError

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(name: str, key: str | None = None) -> str:
    """A folder name without spaces or path separators (`my exp/v1` -> `my_exp_v1`).

    With `key` (the config key it comes from), a name that would leave its parent folder is an error.
    """
    cleaned = _UNSAFE.sub("_", str(name)).strip("_") or "run"
    if key is not None and set(cleaned) <= {"."}:
        raise ConfigError(
            f"'{key}' is {str(name)!r}, which as a folder name would point at path.root or above it; "
            "use letters, digits, '.', '_', '+' or '-' with at least one character that is not a dot."
        )
    return cleaned


def run_dir(opt) -> str:
    """The run folder; `experiment_key` must have been settled (see BaseModel) before this is called.

    `path.run_dir`, when set (a `-test` run sets it to `<run>/test/<stamp>`, see engine/run/test_folder.py), wins."""
    if opt["path"].get("run_dir"):
        return str(opt["path"]["run_dir"])
    root = opt["path"]["root"]
    folder = os.path.join(
        root, safe_name(opt["name"], "name"), safe_name(opt["experiment_key"], "experiment_key")
    )
    # The names above cannot contain a separator; this guards a future change of safe_name.
    if os.path.commonpath([os.path.abspath(root), os.path.abspath(folder)]) != os.path.abspath(root):
        raise ConfigError(f"The run folder '{folder}' is outside 'path.root' ({root}); rename the run.")
    return folder


def images_dir(opt) -> str:
    return os.path.join(run_dir(opt), "images")
