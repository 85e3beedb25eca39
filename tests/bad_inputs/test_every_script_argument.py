"""Every argument of every script, tried with wrong values generated from its declared type: each is one
`error:` line naming the argument, exit 2, and nothing written. Boundary values are accepted.

The wrong values come from what each argument's type says of itself (a count's minimum and maximum, a
number's minimum, a folder that must exist, an output that must not overlap an input), so an argument
added later is covered without touching this file; one with no type says why below.
"""

import argparse
import importlib

import pytest

from tests.helpers.bad_inputs import assert_one_sentence

SCRIPTS = (
    "generate",
    "vae_reconstruct",
    "vae_sample",
    "analyze_latents",
    "push_to_hub",
    "make_sample_tifs",
    "demo_report",
    "key_reference",
    "dataset_to_tifs",
    "export_pti",
)
# Arguments whose values are free text, checked against the run they are given with (a vector's length,
# a label's range, a manifest's column), by the scripts' own tests.
FREE_TEXT = {
    ("generate", "--vector"): "tests/bad_inputs/test_scripts.py",
    ("generate", "--labels"): "tests/test_generate.py",
    ("analyze_latents", "--normalize"): "checked as datasets' normalize",
    ("analyze_latents", "--path-column"): "tests/test_latent_maps.py",
    ("analyze_latents", "--group-column"): "tests/test_latent_maps.py",
    ("push_to_hub", "--message"): "any commit message",
    ("dataset_to_tifs", "--keys"): "checked against the dataset's items: tests/test_generate.py",
    ("demo_report", "--key"): "names the demo's run folders",
    ("demo_report", "--stage1"): "names the demo's run folders",
    ("demo_report", "--stage2"): "names the demo's run folders",
}


def base_arguments(script: str, paths: dict) -> list[str]:
    """Arguments that parse for `script`: stand-in folders (nothing gets past the wrong value)."""
    run, data, out = paths["run"], paths["data"], paths["out"]
    return {
        "generate": ["--run", run, "--out", out, "--num-samples", "1"],
        "vae_reconstruct": ["--run", run, "--input", data, "--out", out],
        "vae_sample": ["--run", run, "--out", out],
        "analyze_latents": ["--run", run, "--group", f"a={data}", "--out", out],
        "push_to_hub": ["--run", run, "--repo", "user/name"],
        "make_sample_tifs": ["--out", out, "--patients", "1", "--slices", "1", "--size", "16"],
        "demo_report": ["--root", data, "--out", out],
        "key_reference": ["--check"],
        "dataset_to_tifs": ["--config", paths["a file"], "--out", out],
        "export_pti": ["--run", run, "--out", out],
    }[script]


def wrong_values(action: argparse.Action, paths: dict) -> list[str]:
    """Values the argument's type or choices must refuse."""
    kind = action.type
    name = getattr(kind, "__name__", "")
    values = []
    if action.choices is not None:
        values.append("not-a-choice")
    if name == "whole number":
        values += ["abc", "1.5", "", "nan", str(2**70), str(kind.minimum - 1)]
        if kind.maximum is not None:
            values.append(str(kind.maximum + 1))
    elif name == "number":
        values += ["abc", "", "nan", "inf", "-inf"]
        if kind.minimum is not None:
            values.append(str(kind.minimum - 1))
    elif name in ("folder", "file", "NAME=FOLDER"):
        values += [paths["missing"], paths["a file"] if name != "file" else paths["data"]]
        if name == "NAME=FOLDER":
            values += ["no-equals-sign", f"={paths['data']}"]
        if action.option_strings[0] == "--out":  # an output: a file, an input, a run folder
            values = [paths["a file"], "", paths["run"]]
    elif name == "device":
        values += ["cpuu", "cuda:99", ""]
    elif name == "regular expression":
        values += ["(unclosed", "*"]
    elif name == "repository":
        values += ["no-slash", "a/b/c", "/name"]
    return values


def boundary_values(action: argparse.Action) -> list[str]:
    kind = action.type
    if getattr(kind, "__name__", "") == "whole number":
        return [str(v) for v in (kind.minimum, kind.maximum) if v is not None]
    if getattr(kind, "__name__", "") == "number" and kind.minimum is not None:
        return [str(kind.minimum)]
    return []


def value_arguments(script: str) -> list[argparse.Action]:
    parser = importlib.import_module(f"scripts.{script}").build_parser()
    return [
        a
        for a in parser._actions
        if a.option_strings and a.nargs != 0 and not isinstance(a, argparse._HelpAction)
    ]


def with_value(script: str, action: argparse.Action, value: str, paths: dict) -> list[str]:
    """The base arguments with `action` set to `value` (its rivals in an exclusive group left out)."""
    argv = base_arguments(script, paths)
    parser = importlib.import_module(f"scripts.{script}").build_parser()
    rivals = {
        s
        for group in parser._mutually_exclusive_groups
        if any(a.dest == action.dest for a in group._group_actions)
        for a in group._group_actions
        if a.dest != action.dest
        for s in a.option_strings
    }
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in rivals or item in action.option_strings:
            skip = True
            continue
        kept.append(item)
    return [*kept, action.option_strings[0], value]


def cases():
    for script in SCRIPTS:
        for action in value_arguments(script):
            yield pytest.param(script, action.option_strings[0], id=f"{script} {action.option_strings[0]}")


@pytest.fixture
def paths(tmp_path):
    for folder in ("run", "data"):
        (tmp_path / folder).mkdir()
    (tmp_path / "file.txt").write_text("a file")
    (tmp_path / "run" / "train.log").write_text("")  # a run folder: no script may write into it
    return {
        "run": str(tmp_path / "run"),
        "data": str(tmp_path / "data"),
        "out": str(tmp_path / "out"),
        "missing": str(tmp_path / "missing"),
        "a file": str(tmp_path / "file.txt"),
    }


@pytest.mark.parametrize("script, option", list(cases()))
def test_wrong_values_of_every_argument_are_one_sentence(script, option, paths, tmp_path, capsys):
    module = importlib.import_module(f"scripts.{script}")
    (action,) = [a for a in value_arguments(script) if a.option_strings[0] == option]
    values = wrong_values(action, paths)
    if not values:
        assert (script, option) in FREE_TEXT, (
            f"{script} {option} takes a value with no type that checks it: give it one "
            "(utils/cli/args.py) or say in FREE_TEXT which test checks it"
        )
        return
    before = sorted(p.name for p in tmp_path.iterdir())
    for value in values:
        status = module.main(with_value(script, action, value, paths))
        err = capsys.readouterr().err
        assert_one_sentence(err, status, option)
        assert "(unexpected" not in err, err
        assert sorted(p.name for p in tmp_path.iterdir()) == before, f"{option} {value!r} wrote something"
    for value in boundary_values(action):
        assert action.type(value) is not None


def test_every_script_reads_its_arguments_through_the_shared_layer():
    from utils.cli.script import ScriptParser

    for script in SCRIPTS:
        parser = importlib.import_module(f"scripts.{script}").build_parser()
        assert isinstance(parser, ScriptParser), script
        assert parser.prog == f"{script}.py"
