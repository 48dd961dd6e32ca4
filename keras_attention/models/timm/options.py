"""What `from_timm` asks of every family builder, in one frozen bundle.

`convert.from_timm` fills `BuildOptions` once; each family's `build(layout,
options)` reads it, and the shared `blocks.model_inputs`/`blocks.finish` act on
it. A new `from_timm` argument that the builders need is one field here.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """The arguments of one `from_timm` build, as the family builders take them.

    Attributes:
        name: timm's model name (the Keras model's name).
        input_shape: the image shape (height and width may be None).
        classes: the classifier's width.
        include_top: whether to end with the classifier.
        pooling: None, "avg" or "max": the pooling of a headless model.
        head_name: the classifier layer's name (timm's module path, "." -> "_").
        preprocessing: None, or (mean, std) per RGB channel: the model then
            checks and normalises its input itself.
        input_range: (low, high), the range of the RGB values that a model
            with `preprocessing` takes.
        features_only: build timm's feature maps instead of the classifier.
        out_indices: None (all) or the indices into timm's `feature_info` of
            the maps a features_only model returns.
        output_stride: 32, or 16 or 8 to dilate the last stages as timm does.
    """

    name: str
    input_shape: tuple = (None, None, 3)
    classes: int = 1000
    include_top: bool = True
    pooling: str | None = None
    head_name: str = "fc"
    preprocessing: tuple | None = None
    input_range: tuple = (0.0, 1.0)
    features_only: bool = False
    out_indices: tuple | None = None
    output_stride: int = 32
