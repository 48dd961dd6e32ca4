"""README's Python code blocks run as pasted, in order, in one namespace."""

import os
import re

import keras

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks():
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.DOTALL)


def test_readme_python_blocks_run_as_pasted(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 2  # the usage snippet and the return_attention one
    monkeypatch.chdir(tmp_path)  # model.save("model.keras") writes here
    namespace = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, README, "exec"), namespace)  # noqa: S102 (our own README)
    # The loss matches the logits that the model returns.
    model = namespace["model"]
    assert model.loss.get_config()["from_logits"] is True
    assert model.layers[-1].get_config().get("activation") == "linear"
    assert isinstance(namespace["restored"], keras.Model)
