"""Where a `-test` run writes: beside the weights it scores, `<run>/test/<stamp>/`.

A test run in a folder of its own elsewhere (`experiments/<name>/test-<stamp>/`) separates scores from
the weights they belong to; here the run that `path.pretrained` (or, without it, the resumed run) lives
in gets a `test/` folder, one stamped subfolder per test so an earlier result is never overwritten.
Weights that belong to no run folder (a bare save_pretrained folder) keep the default place.
"""

import os
import re

from engine.run.paths import run_dir

_WEIGHTS_FOLDER = re.compile(r"^(final|checkpoint-\d+)$")


def run_of_weights(folder: str) -> str | None:
    """The run folder that holds `folder` (`<run>/final`, `<run>/checkpoint-N`, or a network inside one)."""
    path = os.path.abspath(folder)
    for _ in range(2):  # the weights folder itself, or one network subfolder of it
        if _WEIGHTS_FOLDER.match(os.path.basename(path)):
            return os.path.dirname(path)
        path = os.path.dirname(path)
    return None


def place_test_run(opt, state) -> str:
    """Set `path.run_dir` of a `-test` run to `<run>/test/<stamp>` and return it (the default when the
    weights belong to no run). `state`: Accelerate's PartialState, to share the stamp."""
    path = opt["path"]
    weights = path.get("pretrained")
    run = run_of_weights(weights) if weights else path.get("resume_from_path") or run_dir(opt)
    if run is None:
        return run_dir(opt)
    if not weights:  # -test of `resume_from_checkpoint: latest` still searches the run, not its test folder
        path["resume_from_path"] = run
    path["run_dir"] = os.path.join(run, "test", shared_stamp(state))
    return path["run_dir"]


def shared_stamp(state) -> str:
    """A timestamp chosen by the main process and shared with all (one test folder, not one per process)."""
    from datetime import datetime

    from accelerate.utils import broadcast_object_list

    stamp = [datetime.now().strftime("%Y%m%d-%H%M%S") if state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(stamp)
    return stamp[0]
