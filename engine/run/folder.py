"""The run folder's lifecycle: nothing is written until the run has fully loaded; a failed start is undone.

    plan      (BaseModel.__init__)  settle the folder's name; refuse a folder that holds a run (unless
                                    resuming) or that another live trainer holds; write nothing
    load      (engine start)        plugins, data, `path.pretrained`, resume state: read only; log lines
                                    are kept in memory
    commit    (engine start)        create the folder, take the lock, write `train.log` (with the lines
                                    kept so far) and `config.yml`, move a resumed branch's newer
                                    checkpoints aside, start the trackers
    rollback  (a failed start)      remove the folders this start created; a folder that existed is
                                    left as it was
    close     (end of the run)      release the lock

`RunFolder` runs plan (its constructor), commit, rollback and close.
"""

import logging
import os
import shutil
from datetime import datetime

from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from engine.checkpoints.store import list_checkpoints
from engine.run import lock as run_lock
from engine.run.inputs import read_paths
from engine.run.paths import run_dir, safe_name
from engine.run.test_folder import place_test_run
from utils.errors import ConfigError
from utils.outputs import check_output

ABANDONED = "abandoned"


class _KeptRecords(logging.Handler):
    """Holds log records until the run folder exists, then hands them to `train.log`."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


class RunFolder:
    """Writing nothing before `commit` means a failed start leaves no `train.log` that would make the
    corrected rerun refused as "the run folder already holds a run", and a failed resume never rewrites
    `config.yml` with the config it has just rejected."""

    def __init__(self, opt, is_train: bool, state: PartialState, logger):
        self.opt, self.is_train, self.state, self.logger = opt, is_train, state, logger
        self.auto_experiment_key = not opt.get("experiment_key")
        if self.auto_experiment_key:
            # One timestamp for every process, chosen on the main one: a folder per process would
            # split the run's checkpoints.
            stamp = [datetime.now().strftime("%Y%m%d-%H%M%S") if state.is_main_process else None]
            if state.num_processes > 1:
                broadcast_object_list(stamp)
            opt["experiment_key"] = ("test-" if not is_train else "") + stamp[0]
        if not is_train:
            place_test_run(opt, state)  # -test writes beside the weights it scores: <run>/test/<stamp>/
        self.path = run_dir(opt)
        safe_name(opt.get("tracker_project_name") or opt["name"], "tracker_project_name")
        self.existed = os.path.isdir(self.path)
        self.lock_path = None
        self.committed = False
        self._created = []
        self._kept = _KeptRecords()
        for handler in list(self._base_logger.handlers):  # left by a start that failed in this process
            if isinstance(handler, _KeptRecords):
                self._base_logger.removeHandler(handler)
        self._base_logger.addHandler(self._kept)
        self._refuse_unless_startable()

    @property
    def _base_logger(self) -> logging.Logger:
        return getattr(self.logger, "logger", self.logger)

    def _refuse_unless_startable(self):
        check_output(
            "The run folder",
            self.path,
            [(f"'{where}'", path) for where, path in read_paths(self.opt)],
            own_results=self.existed and self.is_train,
            inside_a_run=not self.is_train,  # <run>/test/<stamp>, a new folder of its own
            beside_a_run=False,  # a run inside another would confuse `latest` and checkpoint rotation
            advice="set 'path.root' (or 'name', 'experiment_key') so that the run folder lies elsewhere",
        )
        if not self.is_train and self.existed:
            raise ConfigError(
                f"The test folder '{self.path}' exists already (another -test took the same name); a -test "
                "writes only into a new folder of its own: run it again."
            )
        if self.existed and os.listdir(self.path):
            run_lock.refuse_if_locked(self.path)
            if self.is_train and not self.opt["path"].get("resume_from_checkpoint"):
                raise ConfigError(
                    f"The run folder '{self.path}' already holds a run; set 'path.resume_from_checkpoint: latest' "
                    "to continue it, or choose another 'experiment_key' or 'name'."
                )

    def commit(self, abandon_after_step: int | None = None):
        """Create the folder and take it: called once everything the run needs has loaded."""
        self.state.wait_for_everyone()
        try:
            if self.state.is_main_process:
                self._created = _missing_ancestors(self.path)
                # A test folder is never shared: a second -test that picked the same name fails here.
                os.makedirs(self.path, exist_ok=self.is_train)
                self.lock_path = run_lock.acquire(self.path)
                self._start_file_log()
                if abandon_after_step is not None:
                    self._abandon_newer(abandon_after_step)
        finally:
            self.committed = True
            self._base_logger.removeHandler(self._kept)  # other processes write no train.log
            self.state.wait_for_everyone()

    def _start_file_log(self):
        handler = logging.FileHandler(os.path.join(self.path, "train.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        for record in self._kept.records:
            handler.handle(record)
        self._base_logger.removeHandler(self._kept)
        self._kept.records = []
        self._base_logger.addHandler(handler)

    def _abandon_newer(self, step: int):
        """Resuming from an earlier checkpoint starts a branch: its newer checkpoints (and the final
        weights they led to) move to `abandoned/<time>/`, so rotation cannot delete the branch's new
        checkpoints in favour of old later ones, and `latest` means the newest of this branch."""
        newer = [path for s, path in list_checkpoints(self.path) if s > step]
        if not newer:
            return
        final = os.path.join(self.path, "final")
        moved = newer + ([final] if os.path.isdir(final) else [])
        target = os.path.join(self.path, ABANDONED, datetime.now().strftime("%Y%m%d-%H%M%S-%f"))
        os.makedirs(target)
        for path in moved:
            os.replace(path, os.path.join(target, os.path.basename(path)))
        names = ", ".join(os.path.basename(p) for p in moved)
        self.logger.info(f"Resumed from step {step}, so this run branches: moved {names} to {target}.")

    def rollback(self):
        """Undo a failed start: remove what it created; an existing run folder is left as it was."""
        self._base_logger.removeHandler(self._kept)
        self.close()
        if not self.state.is_main_process:
            return
        if run_lock.live_holder(self.path) is not None:
            return  # another trainer created this folder at the same moment and holds it: it is theirs
        if not self.existed and os.path.isdir(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
        for folder in self._created[1:]:  # the run folder's parents that this start made, if now empty
            try:
                os.rmdir(folder)
            except OSError:
                break

    def close(self):
        for handler in list(self._base_logger.handlers):
            if isinstance(handler, logging.FileHandler) and handler.baseFilename == os.path.abspath(
                os.path.join(self.path, "train.log")
            ):
                self._base_logger.removeHandler(handler)
                handler.close()
        run_lock.release(self.lock_path)
        self.lock_path = None


def _missing_ancestors(path: str) -> list[str]:
    """`path` and its parents that do not exist yet, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing
