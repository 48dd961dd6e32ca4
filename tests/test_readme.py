"""README's Python code blocks run as pasted, in order, in one namespace."""

import os
import re

import keras
from timm_import import import_timm

from keras_attention.models.timm import checkpoint as timm_checkpoint

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks():
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.DOTALL)


def timm_random_state_dict(config):
    """What the hub would give for `config`, offline: timm's model with random weights."""
    timm = import_timm()
    model = timm.create_model(config["name"], pretrained=False)
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_readme_python_blocks_run_as_pasted(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 3  # the usage snippet, the return_attention one, from_timm
    monkeypatch.chdir(tmp_path)  # model.save("model.keras") writes here
    # No network in tests: the download returns a random-weight checkpoint of the
    # same architecture, so the block runs its real loading code on it.
    monkeypatch.setattr(timm_checkpoint, "download", timm_random_state_dict)
    namespace = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, README, "exec"), namespace)  # noqa: S102 (our own README)
    # The loss matches the logits that the model returns.
    model = namespace["model"]
    assert model.loss.get_config()["from_logits"] is True
    assert model.layers[-1].get_config().get("activation") == "linear"
    assert isinstance(namespace["restored"], keras.Model)
    assert namespace["pretrained"].output_shape == (None, 5)
