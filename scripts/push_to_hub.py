"""Push a finished run's `final/` folder to the Hugging Face Hub, e.g. after a push that failed at the end
of training (no network, an expired token):

    python scripts/push_to_hub.py --run experiments/tiny/run/final --repo user/name

The token comes from `HF_TOKEN` or `huggingface-cli login`. A model card is written from the folder's
`config.yml` and `metrics.json` when the folder has none yet. Any failure is one sentence, exit 2.
"""

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.cli.imports import defer_unused_imports  # noqa: E402

defer_unused_imports()  # before diffusers loads: no script reads bitsandbytes

from engine.hub import push_failure_sentence, push_final_folder, write_model_card  # noqa: E402
from utils.cli.args import existing_folder  # noqa: E402
from utils.cli.script import ScriptParser  # noqa: E402
from utils.errors import UserError  # noqa: E402


class _Say:
    """The logger push_final_folder expects, printing to stdout."""

    def info(self, message):
        print(message)

    warning = info


def _read(path: Path, parse):
    try:
        return parse(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise UserError(f"'{path}' cannot be read: {str(error).splitlines()[0]}.") from None


def prepare_card(run: Path, repo_id: str) -> None:
    if (run / "README.md").is_file():
        return
    opt = _read(run / "config.yml", yaml.safe_load) or {}
    metrics = _read(run / "metrics.json", json.loads) or {}
    archs = sorted(p.parent.name for p in run.glob("*/config.json"))
    write_model_card(str(run), opt, archs or ["."], metrics, repo_id)


def hub_repository(text: str) -> str:
    """A Hub repository id, `user/name`."""
    if text.count("/") != 1 or not all(text.split("/")):
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form user/name")
    return text


hub_repository.__name__ = "repository"


def build_parser() -> ScriptParser:
    parser = ScriptParser(description=__doc__)
    parser.add_argument(
        "--run", required=True, type=existing_folder, reads=True, help="a run's final/ folder"
    )
    parser.add_argument("--repo", required=True, type=hub_repository, help="Hub repository, user/name")
    parser.add_argument(
        "--public", action="store_true", help="create the repository as public (default: private)"
    )
    parser.add_argument("--message", default=None, help="commit message")
    return parser


def run(args) -> int:
    if not any(args.run.glob("*/model.safetensors")):
        raise UserError(
            f"--run '{args.run}' is not a run's final/ folder (it needs one subfolder per network with a "
            "model.safetensors)."
        )
    prepare_card(args.run, args.repo)
    message = args.message or f"Upload {args.run}"
    try:
        push_final_folder(
            str(args.run), args.repo, private=not args.public, commit_message=message, logger=_Say()
        )
    except UserError:
        raise
    except Exception as error:  # no network, a refused token: the folder is untouched, try again later
        raise UserError(push_failure_sentence(error, str(args.run), args.repo)) from error
    return 0


def main(argv=None) -> int:
    return build_parser().run(run, argv)


if __name__ == "__main__":
    sys.exit(main())
