"""One value against its `Key` (utils/config/key_value.py): text-or-list keys with and without choices."""

import pytest

from utils.config.key_value import check_value
from utils.config.schema import Key
from utils.errors import ConfigError


def test_a_text_or_list_key_without_choices_takes_names_and_refuses_the_rest():
    key = Key("mask", "str|list", "batch keys")
    assert check_value("control.key", "mask", key) == "mask"
    assert check_value("control.key", ["mask", "edges"], key) == ["mask", "edges"]
    for wrong in ([], [3], [""], 1.5):
        with pytest.raises(ConfigError, match=r"'control.key' .*a name"):
            check_value("control.key", wrong, key)


def test_a_text_or_list_key_with_choices_names_the_nearest():
    key = Key("tensorboard", "str|list", "trackers", ("tensorboard", "comet_ml"))
    assert check_value("report_to", ["comet_ml"], key) == ["comet_ml"]
    with pytest.raises(ConfigError, match="tensorboard"):
        check_value("report_to", "tensorbord", key)
