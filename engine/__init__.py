"""The engine: everything that runs a model plugin, and `BaseModel`, the class a plugin subclasses.

    base_model      the plugin contract: hooks, `add_network`, `step`, `log`, `log_images`
    start           set-up before the first step       loop          the training loop
    accelerator     the run's Accelerator (processes, precision, trackers)
    evaluation      validation passes and `-test`      optimization  optimizers, LR schedules, EMA
    data            DataLoaders from `datasets`        loader_rng    the loaders' own random streams
    prepared_network  DDP and autocast around a network's calls
    model_log       what `log` and `log_images` write to: trackers, or the validation pass's means
    seed_style      seed-style plugin code made to train correctly
    divergence      the stop after too many skipped steps in a row
    hub             the model card and the Hub upload
    run/            the run folder, its lock, trackers, report, signals, the end of the processes
    checkpoints/    checkpoint folders, save and resume, best weights, weights on disk

The engine imports no plugin: trainer.py looks the model up in the registry and hands it over.
"""

from engine.base_model import BaseModel

__all__ = ["BaseModel"]
