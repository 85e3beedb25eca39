"""The run's Accelerator: processes, mixed precision, trackers and the seedable data order."""

import os

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration

from engine.run.trackers import requested_trackers


def multi_process_cpu() -> bool:
    """True under torchrun on a machine without GPUs: Accelerate then needs `cpu=True` to use gloo
    (otherwise every process believes it is alone and they all train on their own)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def make_accelerator(opt, run_dir: str) -> Accelerator:
    train = opt["train"]
    return Accelerator(
        cpu=multi_process_cpu(),
        gradient_accumulation_steps=train["gradient_accumulation_steps"],
        mixed_precision=opt["mixed_precision"],
        log_with=requested_trackers(opt["report_to"]) or None,
        project_config=ProjectConfiguration(
            project_dir=run_dir, logging_dir=os.path.join(run_dir, opt["path"]["logging_dir"])
        ),
        # Seedable samplers make every epoch's order a function of (seed, epoch), so a resumed run
        # sees exactly the batches an uninterrupted one would.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=train["find_unused_parameters"])
        ],
    )
