"""The classes a model's heads predict against the classes its data holds, before the run folder is
written: `BaseModel.class_targets()` says which batch key each head is scored on, and a dataset that
knows its classes without reading its files again says so in `class_counts()` (a generated set from its
settings, a manifest from the labels of its CSV). Data that cannot tell (mask files read per item) is
checked at each batch by the model (`utils.errors.classes.check_batch_classes`)."""

from utils.errors.classes import class_count_error


def check_class_counts(model) -> None:
    targets = model.class_targets()
    if not targets:
        return
    for phase, loader in (("train", model.train_loader), (model.evaluated_set, model.val_loader)):
        counts = getattr(getattr(loader, "dataset", None), "class_counts", None)
        if counts is None:
            continue
        counts = counts()
        for where, classes, key in targets:
            if counts.get(key, 0) > classes:
                kind = model.opt["datasets"][phase].get("type")
                raise class_count_error(where, classes, key, f"'datasets.{phase}' ({kind})", counts[key])
