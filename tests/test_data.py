"""The tf.data pipelines: the offline digits, TFDS (mocked), image folders, augmentation."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attention import data


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


def first_batch(dataset):
    images, labels = next(iter(dataset))
    return np.asarray(images), np.asarray(labels)


def test_digits_split_sizes_and_types(digits):
    (x_train, y_train), (x_test, y_test) = digits
    assert x_train.shape == (4000, 28, 28, 1) and x_test.shape == (1000, 28, 28, 1)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int32
    # Stratified: each digit gives 100 test images.
    np.testing.assert_array_equal(np.bincount(y_test), [100] * 10)
    np.testing.assert_array_equal(np.bincount(y_train), [400] * 10)


def test_digits_split_is_disjoint(digits):
    (x_train, _), (x_test, _) = digits
    train_images = {image.tobytes() for image in x_train}
    assert not any(image.tobytes() in train_images for image in x_test)
    # No image is lost or duplicated: the 5,000 digits are all distinct.
    assert len(train_images) + len({image.tobytes() for image in x_test}) == 5000


def test_digits_are_shuffled_not_sorted_by_class(digits):
    (_, y_train), (_, y_test) = digits
    for labels in (y_train, y_test):
        # Sorted by class, the labels change 9 times; shuffled, most neighbours differ.
        assert np.count_nonzero(np.diff(labels)) > 0.8 * len(labels)
        assert len(np.unique(labels[:50])) >= 8


def test_digits_split_is_fixed_by_split_seed(digits):
    (_, y_train), _ = digits
    (_, again), _ = data.load_digits()
    (_, other), _ = data.load_digits(split_seed=1)
    np.testing.assert_array_equal(again, y_train)
    assert not np.array_equal(other, y_train)


def test_pipeline_batches_are_scaled_float32():
    bundle = data.load(batch_size=16, limit=64, augment="none", seed=0)
    images, labels = first_batch(bundle.train)
    assert images.shape == (16, 28, 28, 1) and images.dtype == np.float32
    assert labels.shape == (16,) and labels.dtype == np.int32
    assert images.min() >= 0.0 and 0.9 < images.max() <= 1.0
    assert bundle.input_shape == (28, 28, 1) and bundle.num_classes == 10
    assert (bundle.train_size, bundle.test_size) == (64, 64)


def test_test_pipeline_is_in_fixed_order_and_unaugmented(digits):
    bundle = data.load(batch_size=32, limit=64, seed=0)
    first, labels = first_batch(bundle.test)
    again, _ = first_batch(bundle.test)
    np.testing.assert_array_equal(first, again)
    _, (x_test, y_test) = digits
    np.testing.assert_allclose(first, x_test[:32] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(labels, y_test[:32])


def test_training_pipeline_reshuffles_each_epoch():
    bundle = data.load(batch_size=64, limit=64, augment="none", seed=0)
    _, epoch1 = first_batch(bundle.train)
    _, epoch2 = first_batch(bundle.train)
    assert sorted(epoch1) == sorted(epoch2)  # the same 64 images...
    assert not np.array_equal(epoch1, epoch2)  # ...in another order


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_augmentation_stays_float32_under_mixed_policy(policy, digits):
    keras.config.set_dtype_policy(policy)
    bundle = data.load(batch_size=64, limit=64, augment="digits", seed=0)
    images, _ = first_batch(bundle.train)
    assert images.dtype == np.float32
    assert np.isfinite(images).all() and images.min() >= -1e-3 and images.max() <= 1.0 + 1e-3
    # Augmented: no batch image equals its original digit.
    (x_train, _), _ = digits
    originals = {x.tobytes(): x / 255.0 for x in x_train[:64]}
    assert len(originals) == 64
    for image in images:
        assert min(np.abs(image - o).max() for o in originals.values()) > 1e-3


def test_natural_augmentation_flips():
    layers = data.augmentation_layers("natural", seed=0)
    assert isinstance(layers[0], keras.layers.RandomFlip)
    assert all(layer.dtype_policy.name == "float32" for layer in layers)
    assert data.augmentation_layers("none") == []
    with pytest.raises(ValueError, match="`augment`"):
        data.augmentation_layers("mnist")


def test_min_size_enlarges_small_images():
    bundle = data.load(batch_size=4, limit=8, augment="none", min_size=64)
    images, _ = first_batch(bundle.test)
    assert images.shape == (4, 64, 64, 1) and bundle.input_shape == (64, 64, 1)
    bundle = data.load(batch_size=4, limit=8, augment="none", image_size=32, min_size=64)
    assert first_batch(bundle.test)[0].shape == (4, 32, 32, 1)  # explicit size wins


def test_tfds_dataset_through_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=24):
        bundle = data.load("mnist", batch_size=8, seed=0)
        images, labels = first_batch(bundle.train)
        test_images, _ = first_batch(bundle.test)
    assert images.shape == (8, 28, 28, 1) and images.dtype == np.float32
    assert test_images.shape == (8, 28, 28, 1)
    assert images.min() >= -1e-3 and images.max() <= 1.0 + 1e-3
    assert labels.dtype == np.int32 and ((0 <= labels) & (labels < 10)).all()
    assert bundle.input_shape == (28, 28, 1) and bundle.num_classes == 10


def test_tfds_images_of_varying_size_are_resized():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        with pytest.raises(ValueError, match="image_size"):
            data.load("tf_flowers", batch_size=4)
        bundle = data.load("tf_flowers", batch_size=4, image_size=24, seed=0)
        images, _ = first_batch(bundle.train)
    assert images.shape == (4, 24, 24, 3) and images.dtype == np.float32
    assert bundle.input_shape == (24, 24, 3) and bundle.num_classes == 5


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(5):
            image = rng.integers(0, 256, (20, 30, 3)).astype("uint8")
            keras.utils.save_img(tmp_path / name / f"{i}.png", image)
    bundle = data.load(str(tmp_path), batch_size=4, image_size=16, seed=0)
    images, labels = first_batch(bundle.train)
    assert images.shape == (4, 16, 16, 3) and images.dtype == np.float32
    assert set(labels) <= {0, 1}
    assert images.min() >= -1e-3 and images.max() <= 1.0 + 1e-3
    assert bundle.num_classes == 2 and (bundle.train_size, bundle.test_size) == (8, 2)


@pytest.fixture
def offline(monkeypatch):
    """No network: every TCP connection fails at once, as on a machine without one."""

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr("socket.create_connection", refuse)


def test_tfds_name_not_downloaded_fails_fast_offline(offline, tmp_path):
    pytest.importorskip("tensorflow_datasets")
    start = time.perf_counter()
    with pytest.raises(data.DataError) as error:
        data.tfds_load("cifar10", ["train", "test"], data_dir=str(tmp_path), as_supervised=True)
    assert time.perf_counter() - start < 20
    message = str(error.value)
    assert "\n" not in message
    assert "'cifar10' is not downloaded" in message and "www.cs.toronto.edu" in message
    assert str(tmp_path / "cifar10") in message and "'digits'" in message


def test_unknown_tfds_name_is_one_line():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(data.DataError, match="'no_such_dataset' is not a TensorFlow Datasets name"):
        data.load("no_such_dataset")


def test_as_rgb_repeats_the_grey_channel_and_passes_the_rest():
    grey = np.arange(2 * 4 * 4, dtype="float32").reshape(2, 4, 4, 1) / 32
    masks = np.arange(2 * 4 * 4, dtype="int32").reshape(2, 4, 4)
    batches = tf.data.Dataset.from_tensor_slices((grey, masks)).batch(2)
    bundle = data.Data(batches, batches, (4, 4, 1), 3, 2, 2)  # no validation split
    rgb = data.as_rgb(bundle)
    assert rgb.input_shape == (4, 4, 3) and rgb.validation is None
    images, labels = next(iter(rgb.test))
    np.testing.assert_array_equal(images, np.repeat(grey, 3, axis=-1))
    np.testing.assert_array_equal(labels, masks)
    assert data.as_rgb(rgb) is rgb  # RGB already: unchanged
