"""examples/classify_video.py: the clips' labels, the two I3Ds, and a short run."""

import json
import os
import sys

import keras
import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)

import classify_video


def fake_digits(classes=4, per_class=3, size=6, seed=0):
    """Distinct random 'digits' (every pixel inked, so a crop tells where one is)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(1, 256, (classes * per_class, size, size, 1)).astype("uint8")
    labels = np.repeat(np.arange(classes), per_class).astype("int32")
    return images, labels


@pytest.mark.parametrize("frames, gap", [(8, 2), (7, 1), (5, 0)])
def test_clip_label_is_whether_the_first_and_last_digits_share_a_class(frames, gap):
    images, labels = fake_digits()
    canvas, size, count = 20, images.shape[1], 60
    clips, same, info = classify_video.same_digit_clips(
        images, labels, count, frames=frames, canvas=canvas, gap=gap, seed=3
    )
    assert clips.shape == (count, frames, canvas, canvas, 1) and clips.dtype == np.uint8
    assert same.sum() == count // 2  # balanced
    shown = (frames - gap) // 2
    for i in range(count):
        for t in range(frames):
            frame = clips[i, t, ..., 0]
            if shown <= t < shown + gap:
                assert not frame.any(), "the gap frames are empty"
                assert (info["corners"][i, t] == -1).all()
                continue
            # Exactly one digit, the recorded image at the recorded place, nothing else.
            y, x = info["corners"][i, t]
            assert 0 <= y <= canvas - size and 0 <= x <= canvas - size
            index = info["first"][i] if t < shown else info["last"][i]
            np.testing.assert_array_equal(frame[y : y + size, x : x + size], images[index, ..., 0])
            assert int(frame.astype(int).sum()) == int(images[index].astype(int).sum())
        first, last = info["first"][i], info["last"][i]
        assert first != last  # another handwritten image, even when "same"
        assert same[i] == int(labels[first] == labels[last])
        # The second digit starts a third of the canvas from the first one's last place.
        gap_distance = np.hypot(*(info["corners"][i, shown + gap] - info["corners"][i, shown - 1]))
        assert gap_distance >= canvas / 3
        # The digits move (Moving MNIST): steps of at most 3 pixels per axis.
        for start, stop in ((0, shown), (shown + gap, frames)):
            steps = np.abs(np.diff(info["corners"][i, start:stop], axis=0))
            assert (steps <= 3).all()


def test_no_single_digit_tells_the_label():
    """Each class opens (and closes) 'same' and 'different' clips alike."""
    images, labels = fake_digits(classes=3, per_class=4)
    _, same, info = classify_video.same_digit_clips(images, labels, 600, canvas=20, seed=0)
    for which in ("first", "last"):
        classes = labels[info[which]]
        for c in range(3):
            share = same[classes == c].mean()
            assert 0.38 < share < 0.62, (which, c, share)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"count": 0}, "count"),
        ({"gap": 7}, "gap"),
        ({"canvas": 8}, "canvas"),
        ({"frames": 2}, "frames"),
    ],
)
def test_bad_clip_arguments_are_named(kwargs, name):
    images, labels = fake_digits()
    args = {"count": 4, "frames": 8, "canvas": 20, "gap": 2, **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`"):
        classify_video.same_digit_clips(images, labels, **args)


def test_nonlocal_i3d_is_the_i3d_at_initialisation():
    """The non-local blocks start as the identity: with the I3D's weights, same logits."""
    shape = (4, 16, 16, 1)
    keras.utils.set_random_seed(0)
    plain = classify_video.build_model("i3d", shape, width=4)
    nonlocal_ = classify_video.build_model("nl_i3d", shape, width=4, nonlocal_blocks=2)
    for layer in plain.layers:
        nonlocal_.get_layer(layer.name).set_weights(layer.get_weights())
    clips = np.random.default_rng(0).random((2, *shape), dtype="float32")
    np.testing.assert_allclose(
        np.asarray(nonlocal_(clips)), np.asarray(plain(clips)), rtol=1e-5, atol=1e-6
    )
    blocks = [layer.name for layer in nonlocal_.layers if layer.name.startswith("nonlocal")]
    assert blocks == ["nonlocal1", "nonlocal2"]
    assert nonlocal_.count_params() > plain.count_params()
    with pytest.raises(ValueError, match="`name`"):
        classify_video.build_model("c2d", shape)


def test_query_attention_is_a_distribution_over_every_frame():
    keras.utils.set_random_seed(0)
    model = classify_video.build_model("nl_i3d", (8, 16, 16, 1), width=4)
    clip = np.random.default_rng(1).random((8, 16, 16, 1), dtype="float32")
    weights, grid = classify_video.query_attention(model, clip, (3, 1, 2))
    assert grid == (4, 4, 4)  # stem /2 in space, stage 2 pools 2x2x2
    assert weights.shape == (4, 2, 2)  # keys: 1x2x2 sub-sampled
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0, abs=1e-5)


def test_one_short_nonlocal_run_writes_model_summary_and_picture(tmp_path):
    argv = ["--model", "nl_i3d", "--clips", "24", "--epochs", "1", "--batch-size", "12",
            "--seeds", "1", "--width", "4", "--precision", "float32", "--verbose", "0",
            "--output-dir", str(tmp_path)]  # fmt: skip
    results = classify_video.main(argv)
    assert list(results["models"]) == ["nl_i3d"] and results["models"]["nl_i3d"]["seeds"] == 1
    assert (tmp_path / "nl_i3d_seed0" / "model.keras").exists()
    assert (tmp_path / "nl_i3d_seed0" / "summary.json").exists()
    assert (tmp_path / "nonlocal_attention.png").stat().st_size > 10_000


@pytest.mark.slow
def test_short_run_writes_models_summaries_results_and_picture(tmp_path):
    out = tmp_path / "video"
    argv = ["--clips", "40", "--epochs", "1", "--batch-size", "16", "--seeds", "2",
            "--width", "4", "--precision", "float32", "--verbose", "0",
            "--output-dir", str(out)]  # fmt: skip
    results = classify_video.main(argv)
    assert [(r["model"], r["seed"]) for r in results["runs"]] == [
        ("i3d", 0),
        ("i3d", 1),
        ("nl_i3d", 0),
        ("nl_i3d", 1),
    ]
    for run in results["runs"]:
        folder = out / f"{run['model']}_seed{run['seed']}"
        assert (folder / "model.keras").exists() and not (folder / "backup").exists()
        assert (
            json.loads((folder / "summary.json").read_text())["test_accuracy"]
            == (run["test_accuracy"])
        )
    scores = [r["test_accuracy"] for r in results["runs"] if r["model"] == "nl_i3d"]
    stats = results["models"]["nl_i3d"]
    assert stats["test_accuracy_mean"] == pytest.approx(np.mean(scores))
    assert stats["test_accuracy_std"] == pytest.approx(np.std(scores, ddof=1))
    assert json.loads((out / "results.json").read_text())["models"] == results["models"]
    # The reported accuracy is the saved model's on the test clips (10 = 40 // 4).
    _, (images, labels) = classify_video.clip_digits(32, 3)  # the defaults
    model = keras.saving.load_model(out / "nl_i3d_seed0" / "model.keras")
    clips, same, _ = classify_video.same_digit_clips(images, labels, 10, seed=2)
    predicted = np.argmax(np.asarray(model.predict(clips / 255.0, verbose=0)), axis=-1)
    assert scores[0] == pytest.approx(np.mean(predicted == same), abs=1e-6)
    import matplotlib.image

    picture = matplotlib.image.imread(out / "nonlocal_attention.png")
    assert picture.shape[0] > 200 and picture.shape[1] > 800
    # A second call finds the runs finished and trains nothing.
    again = classify_video.main(argv)
    assert all(r.get("already_finished") for r in again["runs"])
    assert again["models"] == results["models"]
