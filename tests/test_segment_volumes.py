"""examples/segment_volumes.py: the MNI152 labels, the halves, the patches, Dice, a short run."""

import json
import os
import sys

import keras
import numpy as np
import pytest

from keras_attention import models

pytest.importorskip("nilearn")

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)

import segment_volumes


@pytest.fixture(scope="module")
def volume():
    return segment_volumes.load_volume(resolution=2)


def test_labels_are_the_most_probable_tissue(volume):
    from nilearn import datasets

    image, labels = volume
    grey = datasets.load_mni152_gm_template(resolution=2).get_fdata()
    white = datasets.load_mni152_wm_template(resolution=2).get_fdata()
    assert image.shape == labels.shape == grey.shape == (99, 117, 95)
    assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() == 1.0
    # A probability above one half is the largest of the three.
    assert np.all(labels[grey > 0.5] == 1) and np.all(labels[white > 0.5] == 2)
    assert np.all(labels[grey + white < 0.5] == 0)
    shares = np.bincount(labels.ravel()) / labels.size
    assert shares == pytest.approx([0.804, 0.124, 0.072], abs=1e-3)  # the docstring's figures


def test_template_is_mirror_symmetric(volume):
    """Why the default cut is front/back: the right hemisphere is the left one mirrored."""
    image, labels = volume
    np.testing.assert_allclose(image, image[::-1], atol=1e-6)
    assert np.array_equal(labels, labels[::-1])
    assert not np.allclose(image, image[:, ::-1], atol=0.1)


@pytest.mark.parametrize("split", list(segment_volumes.SPLITS))
def test_halves_cut_the_volume_in_two(split):
    grid = np.arange(5 * 6 * 7).reshape(5, 6, 7)
    train, test = segment_volumes.halves(grid, split)
    axis, train_high = segment_volumes.SPLITS[split]
    low, high = (test, train) if train_high else (train, test)
    assert np.array_equal(np.concatenate([low, high], axis=axis), grid)
    assert abs(train.shape[axis] - test.shape[axis]) <= 1
    assert not set(train.ravel()) & set(test.ravel())


def test_front_back_trains_on_the_front():
    grid = np.zeros((4, 6, 4))
    grid[:, 3:] = 1.0  # high y: anterior in the template's RAS grid
    train, test = segment_volumes.halves(grid, "front-back")
    assert train.min() == 1.0 and test.max() == 0.0


def test_dice_scores():
    truth = np.array([0, 0, 1, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0, 0])
    # class 0: 1 shared, 2 + 3 voxels; class 1: 2 shared, 3 + 3; class 2: none shared, 1 + 0.
    assert segment_volumes.dice_scores(truth, predicted) == pytest.approx([0.4, 2 / 3, 0.0])
    assert segment_volumes.dice_scores(truth, truth) == [1.0, 1.0, 1.0]
    assert segment_volumes.dice_scores(np.zeros(3), np.zeros(3)) == [1.0, 1.0, 1.0]


def test_patches_are_crops_of_the_training_half_centred_in_the_brain():
    shape, size = (10, 12, 9), 4
    rng = np.random.default_rng(0)
    labels = (rng.random(shape) < 0.2).astype("uint8") * 2
    code = np.arange(np.prod(shape), dtype="float32").reshape(shape)  # each voxel its index
    pipeline = segment_volumes.patch_pipeline(code, labels, size, patches=12, batch_size=4, seed=3)
    assert int(pipeline.cardinality()) == 3
    epochs = []
    for _ in range(2):
        corners = []
        for images, targets in pipeline.as_numpy_iterator():
            assert images.shape == (4, size, size, size, 1)
            assert targets.shape == (4, size, size, size)
            for image, target in zip(images[..., 0], targets):
                corner = np.unravel_index(int(image[0, 0, 0]), shape)
                crop = tuple(slice(c, c + size) for c in corner)
                assert np.array_equal(image, code[crop]) and np.array_equal(target, labels[crop])
                assert target[size // 2, size // 2, size // 2] > 0
                corners.append(corner)
        epochs.append(corners)
    assert epochs[0] != epochs[1]  # new patches every epoch


def test_patch_size_larger_than_the_half_is_refused():
    with pytest.raises(ValueError, match="patch_size"):
        segment_volumes.patch_corners(np.ones((8, 40, 40), "uint8"), 16)


@pytest.mark.parametrize("argv", [["--patch-size", "24"], ["--patches", "0"], ["--model", "x"]])
def test_bad_arguments_stop_the_parser(argv):
    with pytest.raises(SystemExit):
        segment_volumes.parse_args(argv)


def test_prediction_and_gate_attention_cover_the_volume(volume, tmp_path):
    """Untrained tiny Attention U-Net: whole-volume prediction, the gate's map and the PNG."""
    image, labels = volume
    test_image, test_labels = image[40:60, 50:70, 30:47], labels[40:60, 50:70, 30:47]
    keras.utils.set_random_seed(0)
    model = models.AttentionUNet(3, input_shape=(None, None, None, 1), filters=(1, 2, 2, 2, 2))
    probabilities = segment_volumes.predict_volume(model, test_image)
    assert probabilities.shape == test_image.shape + (3,)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    # The same voxels predicted in the padded volume by hand (the padding is zeros).
    padded = np.zeros((32, 32, 32), "float32")
    padded[:20, :20, :17] = test_image
    logits = np.asarray(model.predict_on_batch(padded[None, ..., None]), "float64")
    logits = logits[0, :20, :20, :17]
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    alpha = segment_volumes.gate_attention(model, test_image)
    assert alpha.shape == test_image.shape and 0.0 <= alpha.min() <= alpha.max() <= 1.0
    path = tmp_path / "slices.png"
    predicted = {"attention_unet": np.argmax(probabilities, -1)}
    segment_volumes.plot(test_image, test_labels, predicted, alpha, str(path))
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(path).shape
    assert width > height > 100


@pytest.mark.slow
def test_short_run_writes_models_summaries_and_slices(tmp_path, volume):
    argv = "--epochs 1 --patches 4 --batch-size 2 --patch-size 16 --width 1 --verbose 0"
    argv = argv.split() + ["--precision", "float32", "--output-dir", str(tmp_path)]
    results = segment_volumes.main(argv)
    assert set(results) == {"attention_unet", "unet"}
    image, labels = volume
    test_image = segment_volumes.halves(image, "front-back")[1]
    test_labels = segment_volumes.halves(labels, "front-back")[1]
    for name, summary in results.items():
        folder = tmp_path / name
        assert json.loads((folder / "summary.json").read_text()) == summary
        assert not (folder / "backup").exists()
        model = keras.saving.load_model(folder / "model.keras")
        assert summary["parameters"] == model.count_params()
        fresh = segment_volumes.MODELS[name](3, (None, None, None, 1), filters=(1, 2, 4, 8, 16))
        assert model.count_params() == fresh.count_params()
        # The reported Dice is the reloaded model's on the test half.
        predicted = np.argmax(segment_volumes.predict_volume(model, test_image), -1)
        grey = np.sum((predicted == 1) & (test_labels == 1))
        expected = 2 * grey / (np.sum(predicted == 1) + np.sum(test_labels == 1))
        if np.sum(predicted == 1) + np.sum(test_labels == 1):
            assert summary["test_dice_grey_matter"] == pytest.approx(expected, abs=1e-6)
    assert (tmp_path / "segment_volumes.png").stat().st_size > 10_000
