"""The examples watch a validation split carved from the training data, never the test set."""

import os
import sys

import keras
import numpy as np
import pytest

from keras_attention import data

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)

import run_folder
import segmentation
import spatial_transformer
import train_classifier

QUICK = ["--limit", "64", "--epochs", "1", "--batch-size", "32", "--verbose", "0"]


def images_of(dataset):
    return np.concatenate([np.asarray(x) for x, _ in dataset.as_numpy_iterator()])


def test_digits_validation_is_the_end_of_the_training_digits():
    bundle = data.load(batch_size=16, limit=100, validation_split=0.1, augment="none")
    assert (bundle.train_size, bundle.validation_size, bundle.test_size) == (90, 10, 100)
    (x_train, _), (x_test, _) = data.load_digits()
    held_out = images_of(bundle.validation)
    np.testing.assert_allclose(held_out, x_train[90:100] / 255.0, atol=1e-6)
    # Not one validation digit is a test digit.
    test_images = x_test[:100].reshape(100, -1) / 255.0
    for image in held_out.reshape(10, -1):
        assert np.abs(test_images - image).max(axis=1).min() > 0
    # The training pipeline holds the other 90, each once per epoch.
    assert sum(len(y) for _, y in bundle.train.as_numpy_iterator()) == 90


def test_no_validation_split_keeps_every_training_digit():
    bundle = data.load(batch_size=16, limit=40)
    assert bundle.validation is None and bundle.validation_size is None
    assert bundle.train_size == 40


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, "0.1", True])
def test_bad_validation_split_is_refused(value):
    with pytest.raises(ValueError, match=rf"validation_split={value!r}"):
        data.load(limit=16, validation_split=value)


def test_validation_needs_two_training_examples():
    with pytest.raises(ValueError, match="at least 2 training examples"):
        data.load(limit=1, validation_split=0.5)


def test_folder_validation_comes_from_its_training_subset(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(10):
            image = rng.integers(0, 256, (20, 30, 3)).astype("uint8")
            keras.utils.save_img(tmp_path / name / f"{i}.png", image)
    bundle = data.load(str(tmp_path), batch_size=4, image_size=16, seed=0, validation_split=0.25)
    assert (bundle.train_size, bundle.validation_size, bundle.test_size) == (12, 4, 4)


def test_segmentation_validation_scenes_come_from_the_training_scenes():
    bundle = data.segmentation_data(batch_size=8, limit=40, validation_split=0.1)
    assert (bundle.train_size, bundle.validation_size, bundle.test_size) == (36, 4, 10)


@pytest.fixture
def watched(monkeypatch):
    """The size of the data each run of run_folder.train validates on, and its test set's."""
    sizes = []
    original = run_folder.train

    def train(model, folder, train_data, epochs, evaluate, validation_data=None, **kwargs):
        sizes.append(sum(len(y) for _, y in validation_data.as_numpy_iterator()))
        return original(model, folder, train_data, epochs, evaluate, validation_data, **kwargs)

    monkeypatch.setattr(run_folder, "train", train)
    return sizes


def test_train_classifier_validates_on_held_out_training_digits(tmp_path, watched, capsys):
    argv = QUICK + ["--attention", "none", "--output-dir", str(tmp_path)]
    summary = train_classifier.main(argv)
    assert watched == [6]  # 10% of the 64 training digits; the test set has 64
    assert "58 train / 6 validation / 64 test" in capsys.readouterr().out
    assert 0 <= summary["test_accuracy"] <= 1


def test_spatial_transformer_validates_on_held_out_training_digits(tmp_path, watched):
    spatial_transformer.main(QUICK + ["--output-dir", str(tmp_path)])
    assert watched == [6, 6]


def test_segmentation_validates_on_held_out_training_scenes(tmp_path, watched):
    argv = ["--models", "danet", "--limit", "20", "--epochs", "1", "--batch-size", "8"]
    segmentation.main(argv + ["--verbose", "0", "--output-dir", str(tmp_path)])
    assert watched == [2]  # of 20 training scenes; 5 test scenes
