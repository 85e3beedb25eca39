"""Which Accelerate trackers a run uses, and how comet_ml falls back to an offline archive.

comet_ml with no API key, or with a key but no route to its server, would fail the run; instead it
writes an offline archive into the run folder (uploadable later with `comet upload`) and says so in
one line. A run is one Comet experiment however often it is resumed: its key is chosen at the run's
first start and kept in `<run>/comet_ml/experiment_key`, and every later start of that run folder
continues the experiment under it, online or offline.
"""

import os
import socket
from urllib.parse import urlparse

TRACKERS = ("tensorboard", "comet_ml")

# comet_ml reports its own errors to an error-tracking service (Sentry), set up when it is imported:
# a network attempt, and a leak of run details, that an offline run must never make. Set before the
# import (nothing here imports comet_ml before this module) and undone in `_stop_error_reporting`.
os.environ.setdefault("COMET_ERROR_TRACKING_ENABLE", "false")


def _stop_error_reporting() -> None:
    """Close comet_ml's error reporter if it was set up anyway (comet_ml imported before this module)."""
    try:
        from comet_ml import error_tracking

        if error_tracking.initialized():
            import sentry_sdk

            sentry_sdk.get_client().close(timeout=0)
            sentry_sdk.get_global_scope().set_client(None)
    except Exception:  # an older or newer comet_ml without this module: nothing to close
        pass


def requested_trackers(report_to) -> list[str]:
    names = report_to if isinstance(report_to, list) else [report_to]
    if "all" in names:
        return list(TRACKERS)
    return [n for n in names if n != "none"]


def _comet_reachable(timeout: float = 3.0) -> bool:
    try:
        from comet_ml.config import get_comet_url_override, get_config

        url = urlparse(get_comet_url_override(get_config()))
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except Exception:
        return False


def _experiment_key(comet_dir: str) -> tuple[str, str]:
    """(experiment key, comet_ml.start mode): the run's stored key, continued, or a new one, kept.

    A resume continues with `get_or_create`, not `get`: an earlier start that logged offline has
    created nothing on the server until its archive is uploaded, so an online resume may be the first
    to reach it."""
    from comet_ml.utils import generate_guid

    path = os.path.join(comet_dir, "experiment_key")
    if os.path.isfile(path):
        with open(path) as f:
            return f.read().strip(), "get_or_create"
    key = generate_guid()  # 32 hex characters, a key Comet accepts
    os.makedirs(comet_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(key + "\n")
    return key, "create"


def comet_init_kwargs(run_dir: str, experiment_name: str, logger) -> dict:
    """comet_ml.start keyword arguments: online when a key and the network are there, else offline;
    the run's own experiment key either way (`_experiment_key`)."""
    import comet_ml

    offline_dir = os.path.join(run_dir, "comet_ml")
    experiment_key, mode = _experiment_key(offline_dir)
    continued = {"experiment_key": experiment_key, "mode": mode}
    has_key = bool(
        os.environ.get("COMET_API_KEY") or comet_ml.config.get_config().get_string(None, "comet.api_key")
    )
    online = has_key and _comet_reachable()
    config = dict(
        name=experiment_name,
        log_code=False,
        log_git_metadata=False,
        log_git_patch=False,
        log_env_gpu=False,
        log_env_host=False,
        auto_output_logging="simple",
    )
    if online:
        return {**continued, "experiment_config": comet_ml.ExperimentConfig(**config)}
    _stop_error_reporting()
    os.makedirs(offline_dir, exist_ok=True)
    reason = "cannot reach the Comet server" if has_key else "no COMET_API_KEY is set"
    logger.info(
        f"comet_ml: {reason}; logging offline to {offline_dir} (upload later with `comet upload <archive>.zip`)."
    )
    # log_env_details would probe the cloud metadata address (169.254.169.254) for a provider: offline
    # means no network attempt at all.
    config["log_env_details"] = False
    return {
        **continued,
        "online": False,
        "experiment_config": comet_ml.ExperimentConfig(offline_directory=offline_dir, **config),
    }


def store_run_config(accelerator, config: dict) -> None:
    """Record the run's hyperparameters in every tracker, keeping one TensorBoard run per run folder.

    Accelerate's TensorBoard tracker writes them through `SummaryWriter.add_hparams`, which opens a new
    sub-run named after the current time (and an `hparams.yml` folder beside it), so every launch or
    resume adds a run to TensorBoard's list. Here the same hparams summary goes into the run's own event
    file; the full config is in `<run>/config.yml` anyway.
    """
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            from torch.utils.tensorboard.summary import hparams

            for summary in hparams(config, {}):
                tracker.writer.file_writer.add_summary(summary)
            tracker.writer.flush()
        else:
            tracker.store_init_configuration(config)
