"""Secrets by value: a token in the config is refused before it can be saved anywhere.

A Hugging Face or Comet token under any key (`tracker_project_name: hf_...`, `comet.auth: ...`) or in
a command-line override would be written to `config.yml`, the TensorBoard hparams, a folder name or
the model card. A value shaped like a token is refused, and so is a key whose name says it holds one
(`hf_token`, `api_key`, `password`); the message names the key and never echoes the value.
"""

import re
from collections.abc import Mapping

from utils.errors import ConfigError

SECRET_KEY_WORDS = ("token", "apikey", "secret", "password", "passwd", "auth", "credential", "credentials")
# Refused by shape, never by length alone: a long CamelCase `experiment_key` is an ordinary name.
# Hugging Face user tokens: `hf_` (or the older organisation form `api_org_`) and 34 random letters and
# digits (30 to 40 accepted, for tokens of other vintages).
_HF_TOKEN = re.compile(r"(?<![A-Za-z0-9])(hf|api_org)_[A-Za-z0-9]{30,40}(?![A-Za-z0-9])")
# Comet API keys: 25 letters and digits drawn at random, so they split into many short runs
# (`Ab3dEf6h...`: Ab, 3, d, Ef, 6, h, ...) where a name of 25 characters splits into a few words.
_COMET_KEY = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9]{25}$")
_WORDS_AND_NUMBERS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_RANDOM_RUNS = 10  # a random 25-character key has fewer than 10 runs 3 % of the time; names have 4 to 9
_NUMBER_WORDS = ("id", "ids", "class", "type", "dim", "length", "size", "count")
_SECRET_ADVICE = (
    "put tokens in the environment (HF_TOKEN, COMET_API_KEY) or log in with `huggingface-cli login`, never "
    "in the config or an override, which are saved with the run"
)


def walk(value, where: str = ""):
    """(dotted key, value) for every entry of nested mappings and lists."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            yield name, item
            yield from walk(item, name)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            name = f"{where}[{i}]"
            yield name, item
            yield from walk(item, name)


def looks_like_secret_key(key: str) -> bool:
    """`hf_token`, `comet.auth`, `api_key`, `db_password`, `mytoken`; not `pad_token_id`, `num_tokens` or
    `tokens_per_patch` (a model's numbers about tokens), `author` or `tokenizer`."""
    last = key.rsplit(".", 1)[-1].lower()
    words = [word for word in re.split(r"[^a-z0-9]+", last) if word]
    if not words or words[-1] in _NUMBER_WORDS:
        return False
    if any(word in SECRET_KEY_WORDS for word in words):
        return True
    return last.endswith(("token", "secret", "password", "apikey")) or "api_key" in last


def looks_like_token(text: str) -> bool:
    """A Hugging Face token anywhere in `text`, or `text` shaped like a Comet API key."""
    if _HF_TOKEN.search(text):
        return True
    return bool(_COMET_KEY.match(text)) and len(_WORDS_AND_NUMBERS.findall(text)) >= _RANDOM_RUNS


def check_secrets(data: Mapping) -> None:
    """Refuse a secret-looking key name, and a token-looking value under any key."""
    for where, value in walk(data):
        if looks_like_secret_key(where):
            raise ConfigError(f"The config key '{where}' looks like a secret; {_SECRET_ADVICE}.")
        if isinstance(value, str) and looks_like_token(value):
            raise ConfigError(
                f"The value of '{where}' looks like an access token (not shown here); {_SECRET_ADVICE}."
            )
        if not isinstance(value, (Mapping, list)) and looks_like_token(where.rsplit(".", 1)[-1]):
            raise ConfigError(f"A config key looks like an access token (not shown here); {_SECRET_ADVICE}.")
