"""Where a run writes: `path.root/name/experiment_key`, the same on every process."""

import os
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(name: str) -> str:
    """A folder name without spaces or path separators (`my exp/v1` -> `my_exp_v1`)."""
    return _UNSAFE.sub("_", str(name)).strip("_") or "run"


def run_dir(opt) -> str:
    """The run folder; `experiment_key` must have been settled (see BaseModel) before this is called.

    `path.run_dir`, when set (a `-test` run sets it to `<run>/test/<stamp>`, see utils/test_dir.py), wins."""
    if opt["path"].get("run_dir"):
        return str(opt["path"]["run_dir"])
    return os.path.join(opt["path"]["root"], safe_name(opt["name"]), safe_name(opt["experiment_key"]))


def images_dir(opt) -> str:
    return os.path.join(run_dir(opt), "images")
