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
# Hugging Face user tokens (`hf_` + 34 letters/digits; `api_org_` is the older organisation form).
_HF_TOKEN = re.compile(r"(?<![A-Za-z0-9])(hf|api_org)_[A-Za-z0-9]{8,}")
# Comet API keys: 25 letters and digits; longer mixed-case random strings are treated alike.
_COMET_KEY = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9]{25}$")
_RANDOM_TOKEN = re.compile(r"^(?=.*[0-9])(?=.*[a-z])(?=.*[A-Z])[A-Za-z0-9]{30,}$")
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
    """`hf_token`, `comet.auth`, `api_key`, `db_password`; not `pad_token_id` or `num_tokens` (a model's numbers)."""
    last = key.rsplit(".", 1)[-1].lower()
    words = re.split(r"[^a-z0-9]+", last)
    if words[-1] in ("id", "ids", "class", "type", "dim", "length", "size", "count"):
        return False
    if last.startswith(("author", "tokenizer")):
        return False
    glued = last.endswith(("token", "secret", "password", "apikey")) or last.startswith(
        ("token", "secret", "auth")
    )
    return glued or "api_key" in last or any(word in SECRET_KEY_WORDS for word in words)


def looks_like_token(text: str) -> bool:
    return bool(_HF_TOKEN.search(text) or _COMET_KEY.match(text) or _RANDOM_TOKEN.match(text))


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
