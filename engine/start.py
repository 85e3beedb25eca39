"""Starting a run: load everything it needs, then commit the run folder; a failure undoes the start.

networks      the model's `add_network` / `self.models` entries, named (engine/seed_style.py)
data          `setup_dataloaders()`
weights       `path.pretrained`
optimizers    `build_optimizers()`, LR schedules, gradient clipping, EMA
prepare       Accelerate: DDP/autocast around each network, optimizers, loaders
restored      what a model brings from another trainer's checkpoint (`restored_training_state`)
resume state  `path.resume_from_checkpoint` (read only)
commit        the run folder is created and locked; `train.log`, `config.yml`, trackers
"""

import os

from engine.checkpoints.best_metric import check_best_metric
from engine.checkpoints.checkpointing import branch_point, find_resume_checkpoint, load_checkpoint
from engine.checkpoints.restored_state import apply_restored_state
from engine.checkpoints.resume_check import check_resume_before_setup
from engine.checkpoints.weights import load_pretrained
from engine.class_counts import check_class_counts
from engine.optimization import GradientGuard, make_emas, make_scheduler, prepare_optimizer
from engine.prepared_network import use_prepared
from engine.run.paths import safe_name
from engine.run.report import describe_setup
from engine.run.trackers import comet_init_kwargs, requested_trackers, store_run_config
from engine.seed_style import adopt_appended_networks
from engine.sizes import check_sizes
from engine.speed import apply_speed_options
from utils.config.load import flatten, redact_secrets, save_options
from utils.config.scheduler import warmup_note
from utils.errors import ConfigError, PluginError


def start_run(model, training: bool) -> None:
    """Everything before the first step; on any failure the run folder is left as it was found."""
    try:
        if training:  # a checkpoint that cannot be resumed is refused before anything is built
            check_resume_before_setup(model.opt, model.run_dir, model.accelerator.num_processes)
        _set_up(model, training)
        check_sizes(model)  # from what the model and data declare, before anything is written
        check_class_counts(model)
        if training:
            check_best_metric(model)
            apply_restored_state(model)  # another trainer's checkpoint the model continues
        checkpoint = find_resume_checkpoint(model) if training else None
        if checkpoint is not None:
            load_checkpoint(model, checkpoint)
        model.run_folder.commit(abandon_after_step=branch_point(model.run_dir, model.global_step, checkpoint))
        _write_config_and_start_trackers(model)
    except BaseException:
        model.run_folder.rollback()
        raise


def _set_up(model, training: bool) -> None:
    accelerator, opt = model.accelerator, model.opt
    model.setup_dataloaders()
    if not model.models:
        raise PluginError(
            f"{type(model).__name__} added no network; build one with define_network(opt.network) and "
            "register it in __init__ with self.add_network('net_g', net) (or self.models.append(net))."
        )
    model.named_networks = adopt_appended_networks(model, model.models, model.added_networks)

    pretrained = opt["path"].get("pretrained")
    if pretrained:
        load_pretrained(model, pretrained)
    apply_speed_options(model)  # train.channels_last, train.compile

    optimizers = []
    if training:
        if model.train_loader is None:
            raise ConfigError("Training needs a 'datasets.train' block (or use -test to validate only).")
        optimizers = list(model.optimizers) or list(model.build_optimizers())
        model.gradient_guard = GradientGuard(
            opt["train"]["optim"]["max_grad_norm"], on_device=opt["train"].get("log_every", 1) > 1
        )
        for optimizer in optimizers:
            model.gradient_guard.attach(optimizer)
        model.schedulers = [make_scheduler(opt, o, model.max_train_steps) for o in optimizers]
        note = warmup_note(opt["train"]["scheduler"], model.max_train_steps)
        if note:
            model.logger.warning(note)

    handles = [handle for _, handle in model.named_networks]
    prepared = accelerator.prepare(*[handle.prepared for handle in handles])
    prepared = prepared if isinstance(prepared, (list, tuple)) else [prepared]
    for handle, module in zip(handles, prepared):
        use_prepared(handle, module)
    model.models = handles
    model.optimizers = [prepare_optimizer(accelerator, o) for o in optimizers]
    if model.train_loader is not None:
        model.train_loader = accelerator.prepare(model.train_loader)
    if model.val_loader is not None:
        model.val_loader = accelerator.prepare(model.val_loader)
    model.emas = make_emas(opt["train"].get("ema"), [h.arch for h in handles], accelerator.device)


def _write_config_and_start_trackers(model) -> None:
    accelerator, opt = model.accelerator, model.opt
    if accelerator.is_main_process:
        save_options(opt, os.path.join(model.run_dir, "config.yml"))
        config = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in flatten(redact_secrets(opt.to_dict())).items()
        }
        init_kwargs = {}
        if "comet_ml" in requested_trackers(opt["report_to"]):
            init_kwargs["comet_ml"] = comet_init_kwargs(model.run_dir, opt["experiment_key"], model.logger)
        project = opt.get("tracker_project_name") or opt["name"]
        # The hparams go into the run's own event file: Accelerate's TensorBoard tracker would write them
        # into a timestamp-named folder that shows up as a second run.
        accelerator.init_trackers(
            safe_name(project, "tracker_project_name"), config=None, init_kwargs=init_kwargs
        )
        store_run_config(accelerator, config)
    accelerator.wait_for_everyone()
    describe_setup(model)
