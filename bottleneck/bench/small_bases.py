"""Small bases built here: the shipped Fashion-MNIST base's architecture
(``data/bases/train_fashion_mnist_base.py`` trains it on classes 0-4, the ranking benchmark
:mod:`bench.rank` on other data) and a one-block KerasHub ResNet (the benchmark's and the
tests' tiny preset)."""

from __future__ import annotations

from typing import Any


def fashion_cnn(n_classes: int, *, seed: int | None = None, name: str | None = None) -> Any:
    """The small CNN (uncompiled): two conv/pool stages, a 128-unit ``bottleneck`` layer and
    a softmax over ``n_classes``; Keras seeded with ``seed`` first when given."""
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(28, 28, 1), dtype="float32", name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescaling")(inputs)
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="bottleneck")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def tiny_resnet(seed: int) -> Any:
    """A one-block KerasHub ResNet backbone (64 channels; an 8x8 map at 32 px), seeded."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )
