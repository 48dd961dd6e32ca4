"""The squeeze-excitation bottleneck MLP that several channel gates share.

`Dense(units, activation) -> Dense(C, gate)` on a (..., C) channel descriptor:
SE, CBAM's channel gate, scSE, FcaNet, Gather-Excite and GAM build it alike and
differ only in the sublayers' names (a saved-file format, see DESIGN.md), the
activations and the biases, which are therefore arguments.
"""

import keras


def channel_mlp(
    channels,
    units,
    names,
    dtype,
    activation="relu",
    gate=None,
    use_bias=True,
):
    """The built (hidden, output) Dense pair of an SE-style bottleneck on `channels`.

    Args:
        channels: int, the descriptor's width C, also the output's.
        units: int, the hidden width.
        names: (hidden name, output name), the sublayers' `name`s, which fix
            the saved weight paths.
        dtype: the owner's `dtype_policy`.
        activation: the hidden layer's activation. Defaults to "relu".
        gate: the output layer's activation; None leaves logits. Defaults to None.
        use_bias: bool, biases in both layers. Defaults to True.
    """
    hidden_name, output_name = names
    hidden = keras.layers.Dense(
        units, activation=activation, use_bias=use_bias, dtype=dtype, name=hidden_name
    )
    hidden.build((None, channels))
    output = keras.layers.Dense(
        channels, activation=gate, use_bias=use_bias, dtype=dtype, name=output_name
    )
    output.build((None, units))
    return hidden, output
