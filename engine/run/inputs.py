"""The files and folders a run reads, found in its config, so that its run folder overlaps none of them.

Every string value of the config that names an existing file or folder counts, whichever plugin reads
it: a user's dataset with its own `data_dir` key is covered without declaring anything. Left out are
the top-level names (`name`, `experiment_key`: folder names, not paths), the `path` block's own places
(`root`, `logging_dir`, the run being resumed), a dataset's `split_file` (which the run writes), and the
working directory and the folders above it, which hold every run of the project by design.
"""

import os
from collections.abc import Mapping

from utils.config.secrets import walk

_WRITTEN_OR_OWN = {
    "path.root",
    "path.logging_dir",
    "path.run_dir",
    "path.resume_from_checkpoint",
    "path.resume_from_path",
}


def read_paths(config: Mapping) -> list[tuple[str, str]]:
    """(dotted key, path) of every existing file or folder the config names as something to read."""
    project = os.path.realpath(os.getcwd())
    found = []
    for where, value in walk(config):
        if "." not in where.split("[")[0] or where in _WRITTEN_OR_OWN or where.endswith(".split_file"):
            continue
        if not isinstance(value, str) or not value.strip() or not os.path.exists(value):
            continue
        real = os.path.realpath(value)
        if os.path.commonpath([real, project]) == real:  # the project folder, or a folder above it
            continue
        found.append((where, value))
    return found
