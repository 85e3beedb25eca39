"""Derived numbers of a vector condition, written as formulas of its entries (`condition.features`).

    condition:
      features: [v0, v1, "1/v2 - 1/v3", "1/v3"]

`compile_features` turns the formulas into torch operations; they are stored in the projector's config
and travel with the saved run.
"""

import difflib
import re

import sympy
import torch
from sympy.parsing.sympy_parser import TokenError

from utils.errors import ConfigError

ENTRY = re.compile(r"^v(\d+)$")
# Functions a formula may use, by the names SymPy gives them.
FUNCTIONS = ("log", "exp", "sqrt", "Abs", "sin", "cos", "tan", "atan2", "Min", "Max", "sign")


def entries_used(expressions: list[str]) -> int:
    """How many raw entries the formulas need (one more than the highest `v<i>` they name)."""
    highest = -1
    for expression in expressions:
        for symbol in _parse(expression).free_symbols:
            highest = max(highest, int(ENTRY.match(symbol.name).group(1)))
    return highest + 1


def compile_features(expressions: list[str]):
    """A function (B, N) -> (B, len(expressions)) evaluating the formulas on each row; with
    `check_finite=True` a formula that is not finite on a row is one sentence naming both.

    A network conditioned on a few numbers learns fastest when they are the quantities the output really
    depends on. A lens's point spread function, for instance, changes with the defocus
    `1/depth - 1/focus`: given the two depths (v2, v3) the network must learn that small difference of
    two large numbers, given the defocus it only reads it. SymPy (already installed with torch) parses
    each formula and compiles it to torch operations, so the features are computed on the condition's
    device in training and in generation alike."""
    parsed = [_parse(expression) for expression in expressions]
    size = max(entries_used(expressions), 1)
    symbols = sympy.symbols(f"v0:{size}")
    compiled = sympy.lambdify(symbols, parsed, modules="torch")

    def features(vector: torch.Tensor, check_finite: bool = False) -> torch.Tensor:
        if vector.shape[1] < size:
            raise ConfigError(
                f"'condition.features' use entries up to v{size - 1}, but the condition vector has only "
                f"{vector.shape[1]} numbers."
            )
        values = compiled(*vector.double().unbind(1)[:size])
        # A formula without any entry (a constant) comes back as a number: give it the batch's shape.
        columns = [torch.as_tensor(value, dtype=torch.float64).expand(len(vector)) for value in values]
        # 1/v3 at v3 = 0 or log of a negative entry would reach the loss as NaN, blamed on the learning rate.
        # Checked where the normalisation is fitted (set-up), not at every step: `.any()` waits for the device.
        for expression, column in zip(expressions, columns if check_finite else []):
            bad = ~torch.isfinite(column)
            if bad.any():
                row = vector[bad.nonzero()[0, 0]].tolist()
                raise ConfigError(
                    f"'condition.features' has {str(expression)!r}, which is {column[bad][0].item()} for the "
                    f"condition {[round(v, 6) for v in row]}; write a formula that is finite on every condition."
                )
        return torch.stack(columns, 1).to(vector.dtype)

    return features


def _parse(expression) -> sympy.Expr:
    text = str(expression)
    if "__" in text:  # SymPy evaluates the text as Python: no dunder tricks in a config file
        raise ConfigError(f"'condition.features' has {text!r}; a formula has no '__' in it.")
    try:
        parsed = sympy.parse_expr(text)
    except (SyntaxError, TypeError, ValueError, sympy.SympifyError, TokenError) as error:
        raise ConfigError(
            f"'condition.features' has {text!r}, which is not a formula ({error.__class__.__name__}); "
            "write it in the entries v0, v1, ... e.g. '1/v2 - 1/v3'."
        ) from None
    unknown = [s.name for s in parsed.free_symbols if not ENTRY.match(s.name)]
    if unknown:
        names = [f"v{i}" for i in range(10)]
        hint = difflib.get_close_matches(unknown[0].lower(), names, n=1)
        raise ConfigError(
            f"'condition.features' has {text!r}, which names {unknown[0]!r}; formulas use the vector's entries "
            f"v0, v1, ...{f' (did you mean {hint[0]!r}?)' if hint else ''}"
        )
    functions = sorted({f.func.__name__ for f in parsed.atoms(sympy.Function)} - set(FUNCTIONS))
    if functions:
        hint = difflib.get_close_matches(functions[0], FUNCTIONS, n=1)
        raise ConfigError(
            f"'condition.features' has {text!r}, which calls {functions[0]!r}; the functions are "
            f"{', '.join(FUNCTIONS)}{f' (did you mean {hint[0]!r}?)' if hint else ''}."
        )
    return parsed
