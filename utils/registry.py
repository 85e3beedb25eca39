"""Plugin discovery by file suffix: lazy, sorted, and loud about what went wrong.

Importing every `*_model.py` eagerly would let one plugin with a missing optional dependency break
every run, and an unknown name would be a bare KeyError. Instead each file is read with
`ast` to learn which top-level names it defines; only the file that defines the requested name is
imported. An import error is reported for that file alone, naming the file and the missing module;
a name defined in two files is an error naming both; an unknown name lists the available ones with
the nearest match.
"""

import ast
import importlib
import os
from functools import cached_property
from pathlib import Path

from utils.errors import PluginError, nearest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_BASES: dict[tuple[Path, str], list[str]] = {}  # (file, class) -> the names of its bases, read by ast


def _base_names(node: ast.ClassDef) -> list[str]:
    """The names a class statement derives from (`BaseModel`, `vae.VAE_model` -> `VAE_model`)."""
    names = []
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.append(base.id)
        elif isinstance(base, ast.Attribute):
            names.append(base.attr)
    return names


def _top_level_names(path: Path) -> list[tuple[str, bool]]:
    """(name, is_class) for the classes and assigned names at the top level of a Python file."""
    try:
        tree = ast.parse(path.read_bytes().decode("utf-8"), filename=str(path))
    except SyntaxError as error:
        raise PluginError(
            f"The plugin file '{path}' has a syntax error at line {error.lineno}: {error.msg}."
        ) from None
    except UnicodeDecodeError as error:
        raise PluginError(
            f"The plugin file '{path}' is not UTF-8 text (byte 0x{error.object[error.start]:02x} at position "
            f"{error.start}); save it as UTF-8."
        ) from None
    except OSError as error:
        target = f" (a link to '{os.readlink(path)}', which does not exist)" if path.is_symlink() else ""
        raise PluginError(
            f"The plugin file '{path}' cannot be read{target}: {error.strerror or error}."
        ) from None
    names = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.append((node.name, True))
            _BASES[(path, node.name)] = _base_names(node)
        elif isinstance(node, ast.Assign):
            names += [(t.id, False) for t in node.targets if isinstance(t, ast.Name)]
    return names


class Registry:
    """Names defined in `<folder>/**/*<suffix>`, imported on first use.

    folder: a package folder under the project root (`models`, `models/archs`, `dataset`).
    suffix: the file-name convention (`_model.py`, `_arch.py`, `_dataset.py`).
    """

    def __init__(self, folder: str, suffix: str, kind: str, root: Path = PROJECT_ROOT):
        self.root = root
        self.folder = root / folder
        self.suffix = suffix
        self.kind = kind

    @cached_property
    def files(self) -> list[Path]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
            found += [Path(dirpath) / f for f in filenames if f.endswith(self.suffix)]
        return sorted(found)

    @cached_property
    def index(self) -> dict[str, Path]:
        """name -> file that defines it, across all plugin files."""
        index: dict[str, Path] = {}
        self._classes: set[str] = set()
        # A file that cannot be parsed breaks only the runs that ask for a name it may define.
        self.unreadable: dict[Path, str] = {}
        for path in self.files:
            try:
                names = _top_level_names(path)
            except PluginError as error:
                self.unreadable[path] = str(error)
                continue
            for name, is_class in names:
                if name.startswith("_"):
                    continue
                if name in index and index[name] != path:
                    # Two classes of one name: which one a YAML meant is ambiguous. A module-level
                    # constant repeated in two files (`logger = ...`) is no plugin and is ignored.
                    if is_class and name in self._classes:
                        raise PluginError(
                            f"The {self.kind} '{name}' is defined twice: in '{self._rel(index[name])}' and in "
                            f"'{self._rel(path)}'; rename one of them."
                        )
                    continue
                index[name] = path
                if is_class:
                    self._classes.add(name)
        return index

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def names(self, predicate=None) -> list[str]:
        index = self.index
        return sorted(n for n in index if n in self._classes and (predicate is None or predicate(n)))

    def subclasses_of(self, root: str) -> list[str]:
        """Classes of these files that derive from `root` (directly or through other classes found here),
        `root` itself excluded: the plugins proper, without the base and helper classes beside them."""
        index = self.index
        found: dict[str, bool] = {}

        def derives(name: str, seen: frozenset) -> bool:
            if name not in found:
                bases = _BASES.get((index[name], name), []) if name in index else []
                found[name] = any(
                    b == root or (b not in seen and b in index and derives(b, seen | {b})) for b in bases
                )
            return found[name]

        return self.names(lambda n: n != root and derives(n, frozenset({n})))

    def get(self, name: str, what: str | None = None, candidates: list[str] | None = None):
        """The object called `name`, importing only the file that defines it."""
        path = self.index.get(name)
        if path is None:
            self._raise_if_unreadable(name)
            candidates = candidates if candidates is not None else self.names()
            close = nearest(name, candidates, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            available = ", ".join(candidates) or "none"
            unreadable = ", ".join(f"'{self._rel(p)}'" for p in self.unreadable)
            raise PluginError(
                f"No {what or self.kind} named '{name}' in {self._rel(self.folder)}/**/*{self.suffix}.{hint} "
                f"Available: {available}."
                + (f" These files could not be read and may define it: {unreadable}." if unreadable else "")
            )
        module = self.import_file(path)
        return getattr(module, name)

    def _raise_if_unreadable(self, name: str) -> None:
        """A name that no readable file defines may be in a file that could not be read: say which."""
        if not self.unreadable:
            return
        wanted = name.lower().removesuffix(self.suffix[:-3].lower())
        for path, message in self.unreadable.items():
            stem = path.name[: -len(self.suffix)].lower()
            if stem and (stem in wanted or wanted in stem):
                raise PluginError(f"{message} It may define '{name}', which no other {self.kind} file does.")

    def import_file(self, path: Path):
        module_name = ".".join(path.relative_to(self.root).with_suffix("").parts)
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise PluginError(
                f"The plugin file '{self._rel(path)}' cannot be imported: it needs the module '{error.name}', "
                f"which is not installed (pip install it, or remove the file if you do not use it)."
            ) from error
        except Exception as error:
            raise PluginError(
                f"The plugin file '{self._rel(path)}' failed to import: {type(error).__name__}: {error}."
            ) from error
