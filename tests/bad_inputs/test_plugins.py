"""A broken or misnamed plugin: the run that uses it is told which file and why; the others still work."""

import re
import textwrap

import pytest

from tests.conftest import run_trainer
from tests.helpers.bad_inputs import denoise
from tests.helpers.scripts import make_plugins
from utils.errors import PluginError


@pytest.mark.e2e
def test_plugin_import_error_names_the_file_and_the_module(tmp_path, monkeypatch, capsys):
    import models

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken_model.py").write_text(
        "import torchvision_is_not_here\n\nclass Broken_model:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        models, "MODEL_REGISTRY", models.Registry("plugins", "_model.py", kind="model", root=tmp_path)
    )
    config = denoise(model_type="Broken_model")
    config["path"]["root"] = str(tmp_path / "experiments")
    assert run_trainer(config, tmp_path) == 2
    err = capsys.readouterr().err
    assert "plugins/broken_model.py" in err and "'torchvision_is_not_here'" in err and "Traceback" not in err


@pytest.mark.e2e
def test_arch_without_config_class_is_one_sentence(tmp_path, monkeypatch, capsys):
    import models.archs as archs

    folder = tmp_path / "archplugins"
    folder.mkdir()
    (folder / "noconf_arch.py").write_text(
        textwrap.dedent(
            """
            from transformers import PretrainedConfig, PreTrainedModel

            class NoConf_config(PretrainedConfig):
                model_type = "NoConf"

            class NoConf_arch(PreTrainedModel):
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        archs, "ARCH_REGISTRY", archs.Registry("archplugins", "_arch.py", kind="arch", root=tmp_path)
    )
    config = denoise(network={"type": "NoConf"})
    config["path"]["root"] = str(tmp_path / "experiments")
    assert run_trainer(config, tmp_path) == 2
    assert "must set `config_class = NoConf_config`" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, expected",
    [
        ("class Broken_model:\n    def oops(:\n", "syntax error at line 2"),
        (b"class Broken_model:\n    x = '\xff\xfe'\n", "is not UTF-8 text (byte 0xff"),
        (None, "which does not exist"),  # a dangling symlink
    ],
    ids=["syntax error", "not UTF-8", "dangling symlink"],
)
def test_a_broken_plugin_file_breaks_only_the_runs_that_use_it(tmp_path, content, expected):
    from utils.errors import PluginError
    from utils.registry import Registry

    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "good_model.py").write_text("class Good_model:\n    pass\n")
    broken = folder / "broken_model.py"
    if content is None:
        broken.symlink_to(tmp_path / "gone.py")
    elif isinstance(content, bytes):
        broken.write_bytes(content)
    else:
        broken.write_text(content)
    registry = Registry("plugs", "_model.py", kind="model", root=tmp_path)
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        assert registry.get("Good_model").__name__ == "Good_model"  # the other plugin still works
        assert registry.names() == ["Good_model"]
        with pytest.raises(PluginError, match=re.escape(expected)) as raised:
            registry.get("Broken_model")  # the run that asks for it is told which file and why
        assert "broken_model.py" in str(raised.value)
        with pytest.raises(PluginError, match="could not be read and may define it: 'plugs/broken_model.py'"):
            registry.get("Other_model")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("plugs.good_model", None)
        sys.modules.pop("plugs", None)


def test_broken_plugin_breaks_only_itself_and_is_named(plugin_root):
    reg = make_plugins(
        plugin_root,
        {
            "good_arch.py": "class Good: pass\n",
            "broken_arch.py": "import not_a_real_module\nclass Broken: pass\n",
        },
    )
    assert reg.get("Good").__name__ == "Good"
    with pytest.raises(PluginError, match=r"plugins/broken_arch.py.*'not_a_real_module'"):
        reg.get("Broken")


def test_unknown_name_lists_available_and_nearest(plugin_root):
    reg = make_plugins(plugin_root, {"m_arch.py": "class Denoise_model: pass\nclass Other_model: pass\n"})
    with pytest.raises(
        PluginError, match=r"Did you mean 'Denoise_model'\?.*Available: Denoise_model, Other_model"
    ):
        reg.get("Denoise_modle")


def test_unknown_model_type_lists_only_models():
    from models import find_model_class
    from utils.errors import PluginError

    with pytest.raises(PluginError) as error:
        find_model_class("VAE_modle")
    message = str(error.value)
    assert "Did you mean 'VAE_model'?" in message
    assert "Denoise_model" in message and "LDM_model" in message
    assert "BaseModel" not in message and "TrainingState" not in message
