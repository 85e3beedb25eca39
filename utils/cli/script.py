"""The one argument layer of the scripts: parse, check inputs and outputs, run, one sentence on failure.

    parser = ScriptParser(description=__doc__)
    parser.add_argument("--run", type=existing_folder, required=True, reads=True)
    parser.add_argument("--input", type=existing_folder, required=True, reads=True)
    parser.add_argument("--out", type=output_folder, required=True, writes=True)
    parser.add_argument("--batch-size", type=count(1, MAX_BATCH), default=4)
    return parser.run(main, argv)     # main(args) -> exit status

Every value is checked by its type where it is parsed (`utils/cli/args.py`: bounded counts, finite
numbers, existing folders, devices). Each `writes` argument is then checked against every `reads`
argument (`utils/outputs.py`): an output that is, contains or lies inside an input, a weights folder or
a run's own entries is refused, and so is a folder of files the script did not write; all before the
script writes anything. `run` prints any failure as the one `error: ...` line the trainer prints and
returns 2 (`--debug` shows the traceback instead).
"""

import argparse
import inspect
import os
import sys
from collections.abc import Callable, Iterable

from utils.cli.args import existing_folder
from utils.outputs import OutputError, check_output, claim_output_folder, release_output_folder


class ScriptParser(argparse.ArgumentParser):
    """argparse's parser with `reads=` and `writes=` arguments, a `--debug` flag and `run`; an argument
    error is the single `error: ...` line the trainer prints (argparse prints the usage block first)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        # The script's own file name in messages, also when its `main` is called from another program.
        kwargs.setdefault("prog", os.path.basename(inspect.currentframe().f_back.f_code.co_filename))
        super().__init__(*args, **kwargs)
        self._reads: list[tuple[argparse.Action, Callable]] = []
        self._writes: list[argparse.Action] = []
        self.add_argument("--debug", action="store_true", help="show the traceback of a failure")

    def add_argument(self, *names, reads: bool | Callable = False, writes: bool = False, **kwargs):
        """`reads`: the value names a file or folder the script reads (or a function giving the paths
        in a value, e.g. the FOLDER of `NAME=FOLDER`); `writes`: the value names where it writes."""
        return self._register(super().add_argument(*names, **kwargs), reads, writes)

    def _register(self, action: argparse.Action, reads: bool | Callable, writes: bool) -> argparse.Action:
        if reads:
            self._reads.append((action, reads if callable(reads) else _as_paths))
        if writes:
            self._writes.append(action)
        return action

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help).", file=sys.stderr)
        sys.exit(2)

    def add_run_argument(self, what: str) -> None:
        """`--run`: the weights folder the script reads, described as `what`."""
        self.add_argument("--run", required=True, type=existing_folder, reads=True, help=what)

    def add_reading_group(self, **kwargs) -> "_ReadingGroup":
        """A mutually exclusive group whose arguments take `reads=` and `writes=` as well."""
        return _ReadingGroup(self, super().add_mutually_exclusive_group(**kwargs))

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        inputs = [
            (action.option_strings[0], path)
            for action, paths_of in self._reads
            for path in paths_of(getattr(parsed, action.dest))
        ]
        for action in self._writes:
            value = getattr(parsed, action.dest)
            if value is not None:
                try:
                    check_output(action.option_strings[0], value, inputs)
                except OutputError as error:
                    _say(error)
                    sys.exit(2)
        return parsed

    def run(self, main: Callable[[argparse.Namespace], int | None], argv=None) -> int:
        """Parse `argv`, call `main(args)` and return its status; a failure is one line and status 2."""
        from utils.errors.files import describe_failure

        try:
            args = self.parse_args(argv)
        except SystemExit as stop:  # `--help`, or an argument error already printed in one line
            return stop.code if isinstance(stop.code, int) else 0
        created = []
        try:
            for action in self._writes:
                value = getattr(args, action.dest)
                if value is not None and claim_output_folder(action.option_strings[0], value, self.prog):
                    created.append(value)
            status = main(args) or 0
            return status
        except KeyboardInterrupt:
            if args.debug:
                raise
            print("error: stopped by Ctrl-C.", file=sys.stderr)
            return 130
        except Exception as error:
            if args.debug:
                raise
            _say(describe_failure(error))
            return 2
        finally:
            for folder in created:  # a folder made for a run that wrote nothing goes again
                release_output_folder(folder)


class _ReadingGroup:
    def __init__(self, parser: ScriptParser, group):
        self.parser, self.group = parser, group

    def add_argument(self, *names, reads: bool | Callable = False, writes: bool = False, **kwargs):
        return self.parser._register(self.group.add_argument(*names, **kwargs), reads, writes)


def _as_paths(value) -> Iterable:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _say(error) -> None:
    text = str(error)
    print(f"error: {text if text.endswith('.') else text + '.'}", file=sys.stderr)
