"""The suite keeps its shape: shared helpers come from tests/helpers or conftest, never from another test
module, and a test that starts the trainer carries the `e2e` mark."""

import ast
import glob
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def test_no_test_module_imports_another():
    offenders = []
    for path in glob.glob(os.path.join(ROOT, "tests", "**", "test_*.py"), recursive=True):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[-1].startswith("test_"):
                    offenders.append(f"{os.path.relpath(path, ROOT)} imports {name}")
    assert offenders == []


def test_an_unmarked_test_that_starts_the_trainer_fails_naming_the_mark(tmp_path):
    import trainer

    with pytest.raises(pytest.fail.Exception, match=r"runs the trainer: mark it `@pytest.mark.e2e`"):
        trainer.main(["-opt", str(tmp_path / "x.yml")])
    with pytest.raises(pytest.fail.Exception, match=r"mark it `@pytest.mark.e2e`"):
        subprocess.run([sys.executable, os.path.join(ROOT, "trainer.py"), "-opt", "x.yml"])
    with pytest.raises(pytest.fail.Exception, match=r"mark it `@pytest.mark.e2e`"):
        subprocess.run("accelerate launch trainer.py -opt x.yml", shell=True)
    done = subprocess.run([sys.executable, "-c", "print(2 + 2)"], capture_output=True, text=True)
    assert done.stdout == "4\n"  # any other program runs as it would


def test_the_modules_started_first_exist():
    from tests.conftest import LONGEST_FIRST

    modules = {
        os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "tests", "**", "test_*.py"), recursive=True)
    }
    assert [name for name in LONGEST_FIRST if name not in modules] == []
