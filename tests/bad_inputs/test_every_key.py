"""Every declared key, given wrong values generated from its declaration (tests/helpers/wrong_values.py):
each value is refused in one sentence naming the key, or accepted, and then a real run trains with it.

The config check is called in process for every value (milliseconds each); the values it accepts train in
one tiny run per base and round (the n-th accepted value of every key at once), split in halves only when
a combined run fails, so that the failing key is named."""

import copy
import os

import pytest

from tests.helpers import run_trainer
from tests.helpers.wrong_values import TRAINED, base_config, by_key, cases, config_check, with_value

CASES = cases()
GROUPS = by_key(CASES)
# Cases the config check passes on and the run's start refuses once the data is loaded: each runs alone.
KNOWN = {
    "multitask:datasets.train.num_kinds=boundary 3": "segmentation head classes vs the masks' kinds",
}


def refusal_problem(case, line: str) -> str | None:
    """What is wrong with `line` as the one sentence that refuses `case`, or None."""
    if "(unexpected" in line or "Traceback" in line:
        return f"{case.id}: an untranslated error: {line}"
    if case.key not in line:
        return f"{case.id}: the message does not name '{case.key}': {line}"
    if "\n" in line:
        return f"{case.id}: more than one line: {line!r}"
    return None


@pytest.mark.parametrize("group", list(GROUPS), ids=list(GROUPS))
def test_a_wrong_value_is_refused_naming_its_key(group):
    problems = []
    for case in GROUPS[group]:
        line = config_check(with_value(base_config(case.base), case.key, case.value))
        if line is not None:
            problems.append(refusal_problem(case, line))
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


def accepted_rounds(base: str) -> list[list]:
    """The cases of `base` the config check accepts, in rounds: round n holds each key's n-th value."""
    per_key: dict[str, list] = {}
    for case in CASES:
        if case.id in KNOWN:
            continue
        if case.base == base and config_check(with_value(base_config(base), case.key, case.value)) is None:
            per_key.setdefault(case.key, []).append(case)
    depth = max((len(v) for v in per_key.values()), default=0)
    return [[v[n] for v in per_key.values() if len(v) > n] for n in range(depth)]


def tiny(base: str, tmp_path, stage1) -> dict:
    """`base` shortened to one optimizer step with one validation batch."""
    config = base_config(base)
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"].update(max_train_steps=1, validation_steps=1, checkpointing_steps=1000)
    config["train"].pop("num_train_epochs", None)
    config["train"]["batch_size"] = 2
    config["val"].update(max_batches=1, batch_size=2)
    for block in config["datasets"].values():
        block["size"] = 8
    if "vae" in config:
        config["vae"]["pretrained"] = stage1
    if "num_inference_steps" in config["val"]:
        config["val"].update(num_inference_steps=2, num_samples=2)
    return config


def run_with(config: dict, batch: list, tmp_path, capsys, n: int) -> tuple[int, str, str]:
    """Run `config` with the values of `batch` (after its own run root, so a wrong `path` stays wrong)."""
    folder = tmp_path / f"try{n}"
    folder.mkdir()
    config = copy.deepcopy(config)
    config["path"]["root"] = str(folder / "experiments")
    for case in batch:
        config = with_value(config, case.key, case.value)
    capsys.readouterr()
    status = run_trainer(config, folder)
    return status, capsys.readouterr().err, str(folder / "experiments")


def failing_cases(config, batch, tmp_path, capsys, counter) -> list[str]:
    """Problems of the cases in `batch`: one combined run; a case whose key the one refusal names is
    taken out and the rest run again; halves only when a run fails otherwise."""
    if not batch:
        return []
    counter[0] += 1
    status, err, root = run_with(config, batch, tmp_path, capsys, counter[0])
    if status == 0:
        return []
    if len(batch) == 1:
        problem = refusal_of(batch[0], status, err, root)
        return [problem] if problem else []
    line = _error_line(err)
    named = sorted((c for c in batch if c.key in line), key=lambda c: -len(c.key))  # the longest key named
    if status == 2 and named and refusal_of(named[0], status, err, root) is None:
        return failing_cases(config, [c for c in batch if c is not named[0]], tmp_path, capsys, counter)
    half = len(batch) // 2
    return failing_cases(config, batch[:half], tmp_path, capsys, counter) + failing_cases(
        config, batch[half:], tmp_path, capsys, counter
    )


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    return lines[0] if len(lines) == 1 else ""


def refusal_of(case, status: int, err: str, root: str) -> str | None:
    """What is wrong with a run of `case` that did not train, or None for a clean one-sentence refusal."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    if status != 2 or len(lines) != 1:
        return f"{case.id}: exit {status}, {err[-600:]}"
    if "Traceback" in err:
        return f"{case.id}: a traceback"
    problem = refusal_problem(case, lines[0])
    left = [p for p, _, files in os.walk(root) if files] if os.path.isdir(root) else []
    if problem is None and left:
        problem = f"{case.id}: refused, but left files under {left[0]}"
    return problem


@pytest.mark.e2e
@pytest.mark.parametrize("base", list(TRAINED))
def test_a_value_the_check_accepts_trains(base, tmp_path, capsys, request):
    stage1 = request.getfixturevalue("stage1") if "vae" in base_config(base) else None
    config = tiny(base, tmp_path, stage1)
    counter, problems = [0], []
    for batch in accepted_rounds(base):
        problems += failing_cases(config, batch, tmp_path, capsys, counter)
    assert not problems, "\n".join(problems)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.id in KNOWN],
    ids=lambda c: c.id,
)
def test_a_value_checked_at_start_elsewhere(case, tmp_path, capsys, request):
    stage1 = request.getfixturevalue("stage1") if "vae" in base_config(case.base) else None
    assert not failing_cases(tiny(case.base, tmp_path, stage1), [case], tmp_path, capsys, [0])


def refused_sample() -> list:
    """One case of each kind of wrong value (label) that the config check refuses, per tiny base (not the
    LDM's, which needs a trained VAE)."""
    sample = {}
    for case in CASES:
        kind = (case.base, case.label.split(" ")[0])
        if case.base in TRAINED and case.base != "ldm" and kind not in sample and case.id not in KNOWN:
            if config_check(with_value(base_config(case.base), case.key, case.value)) is not None:
                sample[kind] = case
    return list(sample.values())


@pytest.mark.e2e
def test_a_sample_of_refusals_is_one_sentence_through_the_trainer(tmp_path, capsys):
    """The in-process check above is what `trainer.main` runs: a sample of its refusals end to end."""
    problems, sample = [], refused_sample()
    for n, case in enumerate(sample):
        status, err, root = run_with(tiny(case.base, tmp_path, None), [case], tmp_path, capsys, n)
        problems.append(refusal_of(case, status, err, root))
    assert len(sample) >= 40 and not [p for p in problems if p], "\n".join(filter(None, problems))
