"""Where a `-test` run writes: beside the weights it scores, `<run>/test/<stamp>/`.

A test run in a folder of its own elsewhere (`experiments/<name>/test-<stamp>/`) separates scores from
the weights they belong to; here the run that `path.pretrained` (or, without it, the resumed run) lives
in gets a `test/` folder, one new stamped subfolder per test so an earlier result is never overwritten.
Weights that belong to no run folder (a bare save_pretrained folder) are tested in
`<path.root>/<name>/test/<stamp>/`: a test never writes into a training run's `config.yml` or `train.log`.
"""

import os
import re

from engine.run.paths import run_dir, safe_name

_WEIGHTS_FOLDER = re.compile(r"^(final|best|checkpoint-\d+)$")


def run_of_weights(folder: str) -> str | None:
    """The run folder that holds `folder` (`<run>/final`, `<run>/best`, `<run>/checkpoint-N`, or a network inside one)."""
    path = os.path.abspath(folder)
    for _ in range(2):  # the weights folder itself, or one network subfolder of it
        if _WEIGHTS_FOLDER.match(os.path.basename(path)):
            return os.path.dirname(path)
        path = os.path.dirname(path)
    return None


def place_test_run(opt, state) -> str:
    """Set `path.run_dir` of a `-test` run to a new folder `<run>/test/<stamp>` and return it. `<run>` is
    the run of `path.pretrained`, else the run being resumed; weights that belong to no run are tested
    in `<path.root>/<name>/test/<stamp>`. `state`: Accelerate's PartialState, to share the stamp."""
    path = opt["path"]
    weights = path.get("pretrained")
    if weights:
        run = run_of_weights(weights) or os.path.join(path["root"], safe_name(opt["name"], "name"))
    else:  # -test of `resume_from_checkpoint: latest` still searches the run, not its test folder
        run = path.get("resume_from_path") or run_dir(opt)
        path["resume_from_path"] = run
    path["run_dir"] = os.path.join(run, "test", shared_stamp(state))
    return path["run_dir"]


def shared_stamp(state) -> str:
    """A stamp chosen by the main process and shared with all (one test folder, not one per process):
    the time to the microsecond and the process id, so two tests started in the same second by two
    processes never share a folder (and the folder is created with `exist_ok=False` besides)."""
    from datetime import datetime

    from accelerate.utils import broadcast_object_list

    stamp = [f"{datetime.now():%Y%m%d-%H%M%S-%f}-{os.getpid()}" if state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(stamp)
    return stamp[0]
