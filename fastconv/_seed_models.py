"""The seeds' Keras models, rebuilt with fastconv layers (used by the CLI, tests and benchmarks).

Each function returns an uncompiled :class:`fastconv.Sequential`. The seeds give
only parameter counts for some of these networks; the architectures below are
the classic Keras tutorial models that reproduce those counts exactly (found by
enumerating tutorial-style variants: conv widths, kernel sizes, paddings,
pooling positions, dense widths, and which convs are separable):

==============  =======  ===========================================================
function        params   architecture
==============  =======  ===========================================================
lenet5           61,706  LeNet-5 (LeCun 1998) for 28x28: C5(6, same)-AvgPool-C5(16)-
                         AvgPool-F120-F84-F10, tanh
mnist_cnn       232,650  C3(32)-MaxPool-C3(64)-MaxPool-F128-F64-F10, relu, l2 + dropout
fashion_cnn     435,306  VGG-style selu CNN: 2x C3(32)-Pool-2x C3(64)-Pool-2x C3(128)-
                         Pool-F128-F10, all convs "same"
separable_cnn   184,234  fashion_cnn with the five convs after the first as SeparableConv2D
cifar_cnn       122,570  TensorFlow's CIFAR-10 tutorial CNN: C3(32)-Pool-C3(64)-Pool-C3(64)-F64-F10
resnet_mini      78,426  stem C3(16)+BN, residual stages 16 / 32 / 64 (stride 2, 1x1
                         projection), global average pooling, F10
==============  =======  ===========================================================

Dropout layers have no parameters, so their placement is not fixed by the counts;
they sit where the tutorials put them.

Examples
--------
>>> fashion_cnn().count_params()
435306
"""

from __future__ import annotations

from fastconv import regularizers
from fastconv.layers import (
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    MaxPooling2D,
    ResidualBlock,
    SeparableConv2D,
)
from fastconv.engine.sequential import Sequential

__all__ = [
    "SEED_MODELS",
    "cifar_cnn",
    "fashion_cnn",
    "lenet5",
    "mnist_cnn",
    "resnet_mini",
    "separable_cnn",
]


def lenet5(input_shape=(28, 28, 1), num_classes=10, activation="tanh"):
    """LeNet-5 (LeCun et al. 1998) as Keras tutorials write it for 28x28 MNIST: 61,706 params.

    Conv2D(6, 5, same) - AveragePooling2D - Conv2D(16, 5) - AveragePooling2D - Flatten -
    Dense(120) - Dense(84) - Dense(10, softmax); ``activation`` (tanh, as the paper) elsewhere.
    """
    return Sequential(
        [
            Conv2D(6, 5, padding="same", activation=activation, input_shape=input_shape),
            AveragePooling2D(2),
            Conv2D(16, 5, activation=activation),
            AveragePooling2D(2),
            Flatten(),
            Dense(120, activation=activation),
            Dense(84, activation=activation),
            Dense(num_classes, activation="softmax"),
        ],
        name="lenet5",
    )


def mnist_cnn(input_shape=(28, 28, 1), num_classes=10, l2=1e-4, dropout=0.25):
    """The seeds' MNIST CNN with l2 weight decay and dropout: 232,650 params.

    Conv2D(32, 3, relu) - MaxPool - Conv2D(64, 3, relu) - MaxPool - Flatten - Dropout -
    Dense(128, relu) - Dropout - Dense(64, relu) - Dense(10, softmax); every kernel has
    ``kernel_regularizer=l2(l2)``.
    """
    reg = (lambda: regularizers.l2(l2)) if l2 else (lambda: None)
    return Sequential(
        [
            Conv2D(32, 3, activation="relu", kernel_regularizer=reg(), input_shape=input_shape),
            MaxPooling2D(2),
            Conv2D(64, 3, activation="relu", kernel_regularizer=reg()),
            MaxPooling2D(2),
            Flatten(),
            Dropout(dropout),
            Dense(128, activation="relu", kernel_regularizer=reg()),
            Dropout(dropout),
            Dense(64, activation="relu", kernel_regularizer=reg()),
            Dense(num_classes, activation="softmax", kernel_regularizer=reg()),
        ],
        name="mnist_cnn",
    )


def _vgg_selu(conv, input_shape, num_classes, dropout, name):
    init = "lecun_normal"
    return Sequential(
        [
            Conv2D(
                32, 3, padding="same", activation="selu", kernel_initializer=init, input_shape=input_shape
            ),
            conv(32),
            MaxPooling2D(2),
            conv(64),
            conv(64),
            MaxPooling2D(2),
            conv(128),
            conv(128),
            MaxPooling2D(2),
            Flatten(),
            Dense(128, activation="selu", kernel_initializer=init),
            Dropout(dropout),
            Dense(num_classes, activation="softmax"),
        ],
        name=name,
    )


def fashion_cnn(input_shape=(28, 28, 1), num_classes=10, dropout=0.3):
    """The seeds' Fashion-MNIST selu CNN: 435,306 params.

    A VGG-style stack, all convs 3x3 ``padding="same"``, selu with ``lecun_normal``:
    Conv2D(32) x2 - MaxPool - Conv2D(64) x2 - MaxPool - Conv2D(128) x2 - MaxPool (28 -> 3) -
    Flatten (1,152) - Dense(128, selu) - Dropout - Dense(10, softmax).
    """

    def conv(f):
        return Conv2D(f, 3, padding="same", activation="selu", kernel_initializer="lecun_normal")

    return _vgg_selu(conv, input_shape, num_classes, dropout, "fashion_cnn")


def separable_cnn(input_shape=(28, 28, 1), num_classes=10, dropout=0.3):
    """The SeparableConv2D variant of :func:`fashion_cnn`: 184,234 params.

    The first conv (one input channel) stays a Conv2D; the other five become
    ``SeparableConv2D(f, 3, padding="same", activation="selu")``.
    """

    def conv(f):
        return SeparableConv2D(f, 3, padding="same", activation="selu")

    return _vgg_selu(conv, input_shape, num_classes, dropout, "separable_cnn")


def cifar_cnn(input_shape=(32, 32, 3), num_classes=10):
    """TensorFlow's CIFAR-10 tutorial CNN: 122,570 params.

    Conv2D(32, 3, relu) - MaxPool - Conv2D(64, 3, relu) - MaxPool - Conv2D(64, 3, relu) -
    Flatten - Dense(64, relu) - Dense(10, softmax) (the tutorial emits logits; same count).
    """
    return Sequential(
        [
            Conv2D(32, 3, activation="relu", input_shape=input_shape),
            MaxPooling2D(2),
            Conv2D(64, 3, activation="relu"),
            MaxPooling2D(2),
            Conv2D(64, 3, activation="relu"),
            Flatten(),
            Dense(64, activation="relu"),
            Dense(num_classes, activation="softmax"),
        ],
        name="cifar_cnn",
    )


def _basic_block(filters, strides=1):
    return ResidualBlock(
        [
            Conv2D(filters, 3, strides=strides, padding="same", use_bias=False),
            BatchNormalization(),
            Activation("relu"),
            Conv2D(filters, 3, padding="same", use_bias=False),
            BatchNormalization(),
        ],
        projection_batchnorm=True,
        activation="relu",
    )


def resnet_mini(input_shape=(28, 28, 1), num_classes=10):
    """A small ResNet (He et al. 2016, basic blocks): 78,426 params (672 of them BatchNorm moving statistics).

    Conv2D(16, 3, same) - BN - ReLU - block(16) - block(32, stride 2) - block(64, stride 2) -
    GlobalAveragePooling2D - Dense(10, softmax). Each block is conv-BN-ReLU-conv-BN plus the
    shortcut (a 1x1 conv + BN projection when the shape changes), then ReLU.
    """
    return Sequential(
        [
            Conv2D(16, 3, padding="same", use_bias=False, input_shape=input_shape),
            BatchNormalization(),
            Activation("relu"),
            _basic_block(16),
            _basic_block(32, strides=2),
            _basic_block(64, strides=2),
            GlobalAveragePooling2D(),
            Dense(num_classes, activation="softmax"),
        ],
        name="resnet_mini",
    )


#: CLI name -> (builder, default input shape, training defaults).
SEED_MODELS = {
    "lenet5": (lenet5, (28, 28, 1), {"optimizer": "adam", "lr": 1e-3, "batch_size": 64}),
    "mnist-cnn": (mnist_cnn, (28, 28, 1), {"optimizer": "adam", "lr": 1e-3, "batch_size": 128}),
    "fashion-cnn": (fashion_cnn, (28, 28, 1), {"optimizer": "sgd", "lr": 0.01, "batch_size": 32}),
    "separable-cnn": (separable_cnn, (28, 28, 1), {"optimizer": "adam", "lr": 1e-3, "batch_size": 32}),
    "cifar-cnn": (cifar_cnn, (32, 32, 3), {"optimizer": "adam", "lr": 1e-3, "batch_size": 64}),
    "resnet-mini": (resnet_mini, (28, 28, 1), {"optimizer": "adam", "lr": 1e-3, "batch_size": 64}),
}
