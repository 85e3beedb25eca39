"""The layout keeps its shape: small files, layers that only call down, no history in the code.

    trainer.py -> engine -> (registries) models, dataset -> models/archs -> utils

A plugin (models/, dataset/) may import the engine's contract (`engine.BaseModel`); the engine imports
no concrete plugin, only the registries; utils imports nothing above it.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ["trainer.py", "engine", "models", "dataset", "utils", "scripts"]
MAX_LINES = 320  # "about 300": a file past this has more than one job
HISTORY = re.compile(
    r"\bseed[ -]?0\d\d\b|\bused to (be|leave|rewrite|return|raise|call|crash|fail|write)\b|\bpreviously\b"
    r"|\bformerly\b|\bthe original (code|framework|system|design|version)\b",
    re.IGNORECASE,
)
# Modules that name the design documents on purpose: the compatibility layer's one mapping.
HISTORY_ALLOWED: set[str] = set()


def _product_files() -> list[Path]:
    files = []
    for entry in PRODUCT:
        path = ROOT / entry
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at the top or inside a function."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_no_product_file_is_long():
    long = {_rel(f): n for f in _product_files() if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by job): {long}"


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("utils", ("engine", "models", "dataset", "scripts", "trainer")),
        ("engine", ("scripts", "trainer")),
        ("models", ("scripts", "trainer")),
        ("dataset", ("engine", "models", "scripts", "trainer")),
    ],
)
def test_no_layer_imports_upward(layer, forbidden):
    upward = {
        f"{_rel(f)} imports {name}"
        for f in (ROOT / layer).rglob("*.py")
        for name in _imports(f)
        if name.split(".")[0] in forbidden
    }
    assert not upward, sorted(upward)


def test_the_engine_imports_no_concrete_plugin():
    """Only the registries (`models.archs`, `dataset`) and the arch outputs' contract are reachable."""
    allowed = re.compile(r"^(dataset|models\.archs)$")
    found = {
        f"{_rel(f)} imports {name}"
        for f in (ROOT / "engine").rglob("*.py")
        for name in _imports(f)
        if name.split(".")[0] in ("models", "dataset") and not allowed.match(name)
    }
    assert not found, sorted(found)


def test_the_model_registry_folder_holds_only_plugins_and_their_helpers():
    assert not (ROOT / "models" / "engine").exists()
    from models import model_names

    assert "BaseModel" not in model_names()
    assert {"VAE_model", "LDM_model", "Denoise_model"} <= set(model_names())


def test_utils_is_grouped_by_concern():
    flat = sorted(p.name for p in (ROOT / "utils").glob("*.py"))
    assert len(flat) <= 10, flat


def _comments_and_docstrings(path: Path):
    source = path.read_text()
    for number, line in enumerate(source.splitlines(), 1):
        if "#" in line:
            yield number, line[line.index("#") :]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield getattr(node, "lineno", 1), doc


def test_no_history_in_code_comments():
    found = [
        f"{_rel(f)}:{line}: {HISTORY.search(text).group(0)!r}"
        for f in _product_files()
        if _rel(f) not in HISTORY_ALLOWED
        for line, text in _comments_and_docstrings(f)
        if HISTORY.search(text)
    ]
    assert not found, found


def test_the_engine_has_no_empty_function():
    """A hook point with no body is a promise nothing keeps; BaseModel's overridable hooks are the
    plugin contract and are allowed a docstring-only default."""
    empty = []
    for f in (ROOT / "engine").rglob("*.py"):
        tree = ast.parse(f.read_text())
        contract = {
            id(node)
            for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef) and cls.name == "BaseModel"
            for node in cls.body
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and id(node) not in contract:
                body = [
                    s
                    for s in node.body
                    if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                    and not isinstance(s, ast.Pass)
                ]
                if not body:
                    empty.append(f"{_rel(f)}:{node.lineno} {node.name}")
    assert not empty, empty
