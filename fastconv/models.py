"""The model zoo: small, CPU-trainable versions of the networks CNN tutorials walk through.

Every function builds a functional :class:`fastconv.Model` from the
paper's design, scaled down to train in minutes on MNIST-sized inputs: fewer
stages, narrower layers, a stride-1 stem where the original shrinks a 224x224
image right away. Each takes ``input_shape`` (per sample, NHWC) and ``classes``
and ends in a softmax (per pixel for ``segnet_small``). Layers get explicit,
readable names (``stage2_block1_conv1``) so summaries and saved files are
stable. BatchNormalization uses ``momentum=0.9`` (PyTorch's 0.1) because the
short schedules these models train on have few steps for moving averages.

Beside the paper networks sit five tutorial CNNs, the Keras models the project's seeds train
(``mnist-cnn``, ``fashion-cnn``, ``separable-cnn``, ``cifar-cnn``, ``resnet-mini``): full-size
:class:`fastconv.Sequential` stacks whose parameter counts match the seeds' exactly. They keep
the seeds' names (with hyphens) in the registry, as the CLI has always spelled them; LeNet-5 is
one network for both (:func:`lenet5`).

``MODELS`` maps each name to its function (the CLI's ``--model`` choices) and
``TRAINING`` to the settings ``python -m fastconv train`` and ``bench/zoo.py``
use for it; :func:`digit_masks` makes the bundled-data segmentation task's labels.

Examples
--------
>>> from fastconv import models
>>> model = models.resnet_small((28, 28, 1), classes=10)
>>> sorted(models.MODELS)[:3]
['alexnet_small', 'densenet_small', 'efficientnet_small']
"""

from __future__ import annotations

import numpy as np

from fastconv import layers as L
from fastconv import regularizers
from fastconv.engine.functional import Model
from fastconv.engine.sequential import Sequential
from fastconv.layers.input_layer import Input

__all__ = [
    "MODELS",
    "TRAINING",
    "alexnet_small",
    "cifar_cnn",
    "densenet_small",
    "digit_masks",
    "efficientnet_small",
    "fashion_cnn",
    "inception_small",
    "lenet5",
    "mnist_cnn",
    "mobilenet_small",
    "regnet_small",
    "resnet_mini",
    "resnet_small",
    "segnet_small",
    "separable_cnn",
    "shufflenet_small",
    "vgg_small",
]

_BN = {"momentum": 0.9, "epsilon": 1e-3}


def _conv_bn(x, filters, kernel_size, name, strides=1, activation="relu", groups=1):
    """Conv2D (no bias) -> BatchNormalization -> activation (None: linear)."""
    x = L.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        groups=groups,
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = L.BatchNormalization(**_BN, name=f"{name}_bn")(x)
    return x if activation is None else L.Activation(activation, name=f"{name}_{activation}")(x)


def _dw_bn(x, kernel_size, name, strides=1, activation="relu"):
    """DepthwiseConv2D (no bias) -> BatchNormalization -> activation (None: linear)."""
    x = L.DepthwiseConv2D(
        kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_dwconv"
    )(x)
    x = L.BatchNormalization(**_BN, name=f"{name}_bn")(x)
    return x if activation is None else L.Activation(activation, name=f"{name}_{activation}")(x)


def _classifier(x, classes, dropout=0.0, name="predictions"):
    if dropout:
        x = L.Dropout(dropout, name="top_dropout")(x)
    return L.Dense(classes, activation="softmax", name=name)(x)


# ---------------------------------------------------------------------------
# Plain stacks
# ---------------------------------------------------------------------------


def lenet5(input_shape=(28, 28, 1), classes=10):
    """LeNet-5 (LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
    recognition", Proc. IEEE 1998).

    The original layout: conv 5x5 (6) -> 2x2 average pooling -> conv 5x5 (16) -> pooling ->
    dense 120 -> 84 -> classes, tanh units. Kept at full size (61,706 parameters on 28x28x1);
    only modernised: the first conv pads "same" (the paper padded MNIST to 32x32), the
    sparse C3 connection table is a full conv, and the RBF output is a softmax.
    """
    inputs = Input(input_shape, name="input")
    x = L.Conv2D(6, 5, padding="same", activation="tanh", name="c1")(inputs)
    x = L.AveragePooling2D(2, name="s2")(x)
    x = L.Conv2D(16, 5, activation="tanh", name="c3")(x)
    x = L.AveragePooling2D(2, name="s4")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(120, activation="tanh", name="c5")(x)
    x = L.Dense(84, activation="tanh", name="f6")(x)
    return Model(inputs, _classifier(x, classes), name="lenet5")


def alexnet_small(input_shape=(28, 28, 1), classes=10):
    """AlexNet (Krizhevsky, Sutskever, Hinton, "ImageNet classification with deep convolutional
    neural networks", NeurIPS 2012).

    Kept: five conv layers (a larger first kernel, then 3x3), ReLU, overlapping 3x3/stride-2
    max pooling after conv 1, 2 and 5, and three dense layers with dropout 0.5. Scaled down:
    widths 16-32-48-48-32 instead of 96-256-384-384-256, a 5x5 stride-1 first conv instead of
    11x11 stride 4, dense 128 instead of 4096, no local response normalisation and one
    device instead of two GPU halves.
    """
    inputs = Input(input_shape, name="input")
    x = L.Conv2D(16, 5, padding="same", activation="relu", name="conv1")(inputs)
    x = L.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = L.Conv2D(32, 5, padding="same", activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    x = L.Conv2D(48, 3, padding="same", activation="relu", name="conv3")(x)
    x = L.Conv2D(48, 3, padding="same", activation="relu", name="conv4")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv5")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same", name="pool5")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dropout(0.5, name="drop6")(x)
    x = L.Dense(128, activation="relu", name="fc6")(x)
    x = L.Dropout(0.5, name="drop7")(x)
    x = L.Dense(128, activation="relu", name="fc7")(x)
    return Model(inputs, _classifier(x, classes), name="alexnet_small")


def vgg_small(input_shape=(28, 28, 1), classes=10, widths=(16, 32, 64)):
    """VGG (Simonyan, Zisserman, "Very deep convolutional networks for large-scale image
    recognition", ICLR 2015).

    Kept: blocks of two 3x3 "same" convs with ReLU, each followed by 2x2 max pooling, width
    doubling per block, a dense layer with dropout 0.5 on top. Scaled down: three blocks of
    two convs (VGG-16 has five blocks of 2-3 convs) with ``widths`` 16-32-64 instead of
    64-512, and one dense layer of 128 instead of two of 4096.
    """
    inputs = Input(input_shape, name="input")
    x = inputs
    for b, width in enumerate(widths, start=1):
        x = L.Conv2D(width, 3, padding="same", activation="relu", name=f"block{b}_conv1")(x)
        x = L.Conv2D(width, 3, padding="same", activation="relu", name=f"block{b}_conv2")(x)
        x = L.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(128, activation="relu", name="fc1")(x)
    return Model(inputs, _classifier(x, classes, dropout=0.5), name="vgg_small")


# ---------------------------------------------------------------------------
# Branches: Inception
# ---------------------------------------------------------------------------


def _inception_module(x, c1, c3r, c3, c5r, c5, pool_proj, name):
    """Four parallel branches concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1."""
    b1 = L.Conv2D(c1, 1, activation="relu", name=f"{name}_1x1")(x)
    b2 = L.Conv2D(c3r, 1, activation="relu", name=f"{name}_3x3_reduce")(x)
    b2 = L.Conv2D(c3, 3, padding="same", activation="relu", name=f"{name}_3x3")(b2)
    b3 = L.Conv2D(c5r, 1, activation="relu", name=f"{name}_5x5_reduce")(x)
    b3 = L.Conv2D(c5, 5, padding="same", activation="relu", name=f"{name}_5x5")(b3)
    b4 = L.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = L.Conv2D(pool_proj, 1, activation="relu", name=f"{name}_pool_proj")(b4)
    return L.Concatenate(name=f"{name}_concat")([b1, b2, b3, b4])


def inception_small(input_shape=(28, 28, 1), classes=10):
    """GoogLeNet / Inception v1 (Szegedy et al., "Going deeper with convolutions", CVPR 2015).

    Kept: Inception modules (1x1, 1x1->3x3, 1x1->5x5 and 3x3-max-pool->1x1 branches,
    concatenated), 1x1 reductions before the large kernels, max pooling between module
    groups, global average pooling and dropout instead of big dense layers. Scaled down: a
    single 3x3 stem conv (32) and pool instead of the 7x7/3x3 stem, three modules (3a, 3b,
    4a) with widths about 1/8 of the paper's, no auxiliary classifiers.
    """
    inputs = Input(input_shape, name="input")
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="stem_conv")(inputs)
    x = L.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    x = _inception_module(x, 16, 16, 24, 4, 8, 8, name="inception_3a")  # 56 channels
    x = _inception_module(x, 24, 24, 32, 8, 16, 16, name="inception_3b")  # 88 channels
    x = L.MaxPooling2D(3, strides=2, padding="same", name="pool3")(x)
    x = _inception_module(x, 32, 24, 48, 8, 16, 16, name="inception_4a")  # 112 channels
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return Model(inputs, _classifier(x, classes, dropout=0.4), name="inception_small")


# ---------------------------------------------------------------------------
# Skips: ResNet, DenseNet
# ---------------------------------------------------------------------------


def _basic_block(x, filters, strides, name):
    """ResNet basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, + shortcut, ReLU. The shortcut is a
    1x1 conv (stride ``strides``) + BN when the shape changes, else the identity."""
    h = _conv_bn(x, filters, 3, f"{name}_1", strides=strides)
    h = _conv_bn(h, filters, 3, f"{name}_2", activation=None)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, f"{name}_proj", strides=strides, activation=None)
    y = L.Add(name=f"{name}_add")([h, shortcut])
    return L.Activation("relu", name=f"{name}_out")(y)


def resnet_small(input_shape=(28, 28, 1), classes=10, widths=(16, 32, 64), blocks=(1, 1, 1)):
    """ResNet (He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016).

    Kept: basic residual blocks (two 3x3 conv + BatchNorm, identity shortcut), a 1x1
    projection shortcut with BatchNorm where the stride or width changes (option B),
    stride-2 downsampling at each new stage, global average pooling and one dense layer.
    Scaled down: the paper's CIFAR variant with ``widths`` 16-32-64 and ``blocks`` (1, 1, 1)
    per stage (ResNet-8; the paper's smallest is ResNet-20 with 3 per stage), a 3x3 stem.

    Training recipe (``TRAINING["resnet_small"]``): Adam, batch 64, learning rate 1e-3 multiplied
    by 0.3 after each epoch (1e-3, 3e-4, 9e-5), as the paper also decays its rate. At a constant
    1e-3 the inference-mode accuracy swings by about 3 points from epoch to epoch on 8,000 MNIST
    images (0.977 or 0.943 after 3 epochs depending on the shuffle); with the decay it settled at
    0.981 and 0.976 (two seeds, bundled MNIST, 2,000 validation images).
    """
    inputs = Input(input_shape, name="input")
    x = _conv_bn(inputs, widths[0], 3, "stem")
    for s, (width, n) in enumerate(zip(widths, blocks), start=1):
        for b in range(1, n + 1):
            strides = 2 if (s > 1 and b == 1) else 1
            x = _basic_block(x, width, strides, name=f"stage{s}_block{b}")
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return Model(inputs, _classifier(x, classes), name="resnet_small")


def densenet_small(input_shape=(28, 28, 1), classes=10, growth_rate=8, blocks=(3, 3, 3), compression=0.5):
    """DenseNet (Huang, Liu, van der Maaten, Weinberger, "Densely connected convolutional
    networks", CVPR 2017).

    Kept: dense blocks where each BN-ReLU-3x3 conv layer adds ``growth_rate`` channels and
    sees the concatenation of all earlier outputs in the block; transition layers
    (BN-ReLU-1x1 conv with compression 0.5, then 2x2 average pooling); a final BN-ReLU,
    global average pooling and one dense layer. Scaled down: growth rate 8 instead of 32,
    three blocks of 3 layers (DenseNet-121 has 6-12-24-16 bottleneck layers), a 3x3 stem of
    16 channels instead of 7x7/stride 2 + pooling, no 1x1 bottleneck inside the layers.
    """
    inputs = Input(input_shape, name="input")
    x = L.Conv2D(2 * growth_rate, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    for b, n in enumerate(blocks, start=1):
        for i in range(1, n + 1):
            name = f"block{b}_layer{i}"
            h = L.BatchNormalization(**_BN, name=f"{name}_bn")(x)
            h = L.Activation("relu", name=f"{name}_relu")(h)
            h = L.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{name}_conv")(h)
            x = L.Concatenate(name=f"{name}_concat")([x, h])
        if b < len(blocks):
            name = f"transition{b}"
            channels = int(x.shape[-1] * compression)
            x = L.BatchNormalization(**_BN, name=f"{name}_bn")(x)
            x = L.Activation("relu", name=f"{name}_relu")(x)
            x = L.Conv2D(channels, 1, use_bias=False, name=f"{name}_conv")(x)
            x = L.AveragePooling2D(2, name=f"{name}_pool")(x)
    x = L.BatchNormalization(**_BN, name="final_bn")(x)
    x = L.Activation("relu", name="final_relu")(x)
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return Model(inputs, _classifier(x, classes), name="densenet_small")


# ---------------------------------------------------------------------------
# Efficient blocks: MobileNet, ShuffleNet, EfficientNet, RegNet
# ---------------------------------------------------------------------------


def _inverted_residual(x, expansion, filters, strides, name, kernel_size=3, activation="relu6", se_ratio=0.0):
    """MobileNetV2 inverted residual / EfficientNet MBConv: 1x1 expand (skipped when
    ``expansion == 1``) -> depthwise kxk -> [squeeze-excitation] -> 1x1 linear projection,
    + identity when stride 1 and the width is unchanged."""
    c_in = x.shape[-1]
    h = x
    if expansion != 1:
        h = _conv_bn(h, c_in * expansion, 1, f"{name}_expand", activation=activation)
    h = _dw_bn(h, kernel_size, f"{name}_dw", strides=strides, activation=activation)
    if se_ratio:
        h = _squeeze_excite(h, max(1, int(c_in * se_ratio)), name=f"{name}_se", activation=activation)
    h = _conv_bn(h, filters, 1, f"{name}_project", activation=None)
    if strides == 1 and c_in == filters:
        h = L.Add(name=f"{name}_add")([h, x])
    return h


def _squeeze_excite(x, reduced, name, activation="swish"):
    """Squeeze-and-excitation (Hu et al. 2018): global pool -> 1x1 reduce -> 1x1 expand + sigmoid,
    a per-channel gate ``(N, 1, 1, C)`` multiplied into ``x``."""
    c = x.shape[-1]
    s = L.GlobalAveragePooling2D(name=f"{name}_squeeze")(x)
    s = L.Reshape((1, 1, c), name=f"{name}_reshape")(s)
    s = L.Conv2D(reduced, 1, activation=activation, name=f"{name}_reduce")(s)
    s = L.Conv2D(c, 1, activation="sigmoid", name=f"{name}_expand")(s)
    return L.Multiply(name=f"{name}_excite")([x, s])


def mobilenet_small(input_shape=(28, 28, 1), classes=10):
    """MobileNet v1 and v2 (Howard et al., "MobileNets: efficient convolutional neural networks
    for mobile vision applications", 2017; Sandler et al., "MobileNetV2: inverted residuals and
    linear bottlenecks", CVPR 2018).

    Kept: a depthwise-separable block (3x3 depthwise-BN-ReLU6, 1x1 pointwise-BN-ReLU6, v1),
    then MobileNetV2 inverted residuals (1x1 expansion x4 with ReLU6, 3x3 depthwise with
    ReLU6, linear 1x1 projection, identity skip when stride 1 and widths match), a 1x1
    conv head with ReLU6, global average pooling and dropout. Scaled down: widths 16-24-32
    and a 128-wide head instead of 32-320 and 1280, expansion 4 instead of 6, five blocks
    instead of seventeen, a stride-1 stem.
    """
    inputs = Input(input_shape, name="input")
    x = _conv_bn(inputs, 16, 3, "stem", activation="relu6")
    # MobileNet v1 depthwise-separable block, downsampling 28 -> 14
    x = _dw_bn(x, 3, "sep1_dw", strides=2, activation="relu6")
    x = _conv_bn(x, 24, 1, "sep1_pw", activation="relu6")
    # MobileNetV2 inverted residuals
    x = _inverted_residual(x, 4, 24, 1, "block1")
    x = _inverted_residual(x, 4, 32, 2, "block2")
    x = _inverted_residual(x, 4, 32, 1, "block3")
    x = _conv_bn(x, 128, 1, "head", activation="relu6")
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return Model(inputs, _classifier(x, classes, dropout=0.2), name="mobilenet_small")


def _shuffle_unit(x, out_channels, strides, groups, name):
    """ShuffleNet unit: group 1x1 conv-BN-ReLU -> channel shuffle -> 3x3 depthwise (stride)-BN ->
    group 1x1 conv-BN; stride 1: add the input, stride 2: concatenate a 3x3/2 average-pooled
    input; then ReLU."""
    c_in = x.shape[-1]
    branch_out = out_channels - c_in if strides == 2 else out_channels
    bottleneck = out_channels // 4
    h = _conv_bn(x, bottleneck, 1, f"{name}_gconv1", groups=groups)
    h = L.ChannelShuffle(groups, name=f"{name}_shuffle")(h)
    h = _dw_bn(h, 3, f"{name}_dw", strides=strides, activation=None)
    h = _conv_bn(h, branch_out, 1, f"{name}_gconv2", groups=groups, activation=None)
    if strides == 2:
        s = L.AveragePooling2D(3, strides=2, padding="same", name=f"{name}_avgpool")(x)
        y = L.Concatenate(name=f"{name}_concat")([s, h])
    else:
        y = L.Add(name=f"{name}_add")([h, x])
    return L.Activation("relu", name=f"{name}_relu")(y)


def shufflenet_small(input_shape=(28, 28, 1), classes=10, groups=2, widths=(48, 96), units=(2, 2)):
    """ShuffleNet v1 (Zhang, Zhou, Lin, Sun, "ShuffleNet: an extremely efficient convolutional
    neural network for mobile devices", CVPR 2018).

    Kept: ShuffleNet units (pointwise group convolution, channel shuffle, 3x3 depthwise conv,
    pointwise group convolution with a bottleneck of a quarter of the output width; identity
    add at stride 1; 3x3 average-pooled shortcut concatenated at stride 2), each stage
    opening with a stride-2 unit, global average pooling. Scaled down: ``groups`` 2,
    ``widths`` 48-96 over two stages of two units (the paper: g=3, 240-960 over three stages
    of 4-8-4 units), a 3x3 stride-1 stem of 24 channels without max pooling.
    """
    inputs = Input(input_shape, name="input")
    x = _conv_bn(inputs, 24, 3, "stem")
    for s, (width, n) in enumerate(zip(widths, units), start=2):
        for u in range(1, n + 1):
            x = _shuffle_unit(x, width, 2 if u == 1 else 1, groups, name=f"stage{s}_unit{u}")
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return Model(inputs, _classifier(x, classes), name="shufflenet_small")


def efficientnet_small(input_shape=(28, 28, 1), classes=10):
    """EfficientNet (Tan, Le, "EfficientNet: rethinking model scaling for convolutional neural
    networks", ICML 2019).

    Kept: MBConv blocks (1x1 expansion, depthwise conv, squeeze-and-excitation with ratio 0.25
    of the block's input width, linear 1x1 projection, identity skip when shapes match),
    swish activations, a 3x3 and a 5x5 stage, a 1x1 conv head, global average pooling and
    dropout 0.2. Scaled down: four MBConv blocks (MBConv1 k3 16, MBConv6 k3 24 /2, MBConv6
    k5 40 /2, MBConv6 k3 40) instead of B0's sixteen, a 128-wide head instead of 1280, a
    stride-1 stem; no stochastic depth.
    """
    inputs = Input(input_shape, name="input")
    x = _conv_bn(inputs, 16, 3, "stem", activation="swish")
    blocks = [  # (expansion, filters, kernel, stride)
        (1, 16, 3, 1),
        (6, 24, 3, 2),
        (6, 40, 5, 2),
        (6, 40, 3, 1),
    ]
    for i, (e, f, k, s) in enumerate(blocks, start=1):
        x = _inverted_residual(x, e, f, s, f"block{i}", kernel_size=k, activation="swish", se_ratio=0.25)
    x = _conv_bn(x, 128, 1, "top", activation="swish")
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return Model(inputs, _classifier(x, classes, dropout=0.2), name="efficientnet_small")


def _x_block(x, width, strides, group_width, name):
    """RegNet X block: 1x1 conv-BN-ReLU, 3x3 group conv (groups = width / group_width,
    stride) -BN-ReLU, 1x1 conv-BN, + shortcut (1x1 conv-BN when the shape changes), ReLU."""
    groups = max(1, width // group_width)
    h = _conv_bn(x, width, 1, f"{name}_a")
    h = _conv_bn(h, width, 3, f"{name}_b", strides=strides, groups=groups)
    h = _conv_bn(h, width, 1, f"{name}_c", activation=None)
    shortcut = x
    if strides != 1 or x.shape[-1] != width:
        shortcut = _conv_bn(x, width, 1, f"{name}_proj", strides=strides, activation=None)
    y = L.Add(name=f"{name}_add")([h, shortcut])
    return L.Activation("relu", name=f"{name}_out")(y)


def regnet_small(input_shape=(28, 28, 1), classes=10, widths=(16, 32, 64), depths=(1, 1, 2), group_width=8):
    """RegNetX (Radosavovic, Kosaraju, Girshick, He, Dollar, "Designing network design spaces",
    CVPR 2020).

    Kept: the X block (1x1, 3x3 group conv with a fixed group width, 1x1; bottleneck ratio 1;
    residual add with a 1x1 projection + BN when the shape changes), stages that each open
    with a stride-2 block and widen, global average pooling and one dense layer. Scaled down:
    ``widths`` 16-32-64 with ``depths`` 1-1-2 and group width 8 (RegNetX-200MF: 24-368 over
    1-1-4-7 blocks), three stages instead of four, a stride-1 3x3 stem.
    """
    inputs = Input(input_shape, name="input")
    x = _conv_bn(inputs, 16, 3, "stem")
    for s, (width, n) in enumerate(zip(widths, depths), start=1):
        for b in range(1, n + 1):
            x = _x_block(x, width, 2 if b == 1 else 1, group_width, name=f"stage{s}_block{b}")
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return Model(inputs, _classifier(x, classes), name="regnet_small")


# ---------------------------------------------------------------------------
# Tutorial CNNs: the seeds' Keras models (Sequential, full size)
# ---------------------------------------------------------------------------
# The seeds give only parameter counts for some of these; the architectures are the classic Keras
# tutorial models that reproduce those counts exactly (found by enumerating tutorial-style variants:
# conv widths, kernel sizes, paddings, pooling positions, dense widths, which convs are separable).
# Dropout has no parameters, so its placement is not fixed by the counts; it sits where the
# tutorials put it.


def mnist_cnn(input_shape=(28, 28, 1), classes=10, l2=1e-4, dropout=0.25):
    """The seeds' MNIST CNN (a Keras tutorial network) with l2 weight decay and dropout: 232,650 params.

    Conv2D(32, 3, relu) - MaxPool - Conv2D(64, 3, relu) - MaxPool - Flatten - Dropout -
    Dense(128, relu) - Dropout - Dense(64, relu) - Dense(10, softmax); every kernel has
    ``kernel_regularizer=l2(l2)``.
    """
    reg = (lambda: regularizers.l2(l2)) if l2 else (lambda: None)
    return Sequential(
        [
            L.Conv2D(32, 3, activation="relu", kernel_regularizer=reg(), input_shape=input_shape),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu", kernel_regularizer=reg()),
            L.MaxPooling2D(2),
            L.Flatten(),
            L.Dropout(dropout),
            L.Dense(128, activation="relu", kernel_regularizer=reg()),
            L.Dropout(dropout),
            L.Dense(64, activation="relu", kernel_regularizer=reg()),
            L.Dense(classes, activation="softmax", kernel_regularizer=reg()),
        ],
        name="mnist_cnn",
    )


def _vgg_selu(conv, input_shape, classes, dropout, name):
    init = "lecun_normal"
    return Sequential(
        [
            L.Conv2D(
                32, 3, padding="same", activation="selu", kernel_initializer=init, input_shape=input_shape
            ),
            conv(32),
            L.MaxPooling2D(2),
            conv(64),
            conv(64),
            L.MaxPooling2D(2),
            conv(128),
            conv(128),
            L.MaxPooling2D(2),
            L.Flatten(),
            L.Dense(128, activation="selu", kernel_initializer=init),
            L.Dropout(dropout),
            L.Dense(classes, activation="softmax"),
        ],
        name=name,
    )


def fashion_cnn(input_shape=(28, 28, 1), classes=10, dropout=0.3):
    """The seeds' Fashion-MNIST selu CNN (a Keras tutorial network): 435,306 params.

    A VGG-style stack, all convs 3x3 ``padding="same"``, selu with ``lecun_normal``:
    Conv2D(32) x2 - MaxPool - Conv2D(64) x2 - MaxPool - Conv2D(128) x2 - MaxPool (28 -> 3) -
    Flatten (1,152) - Dense(128, selu) - Dropout - Dense(10, softmax).
    """

    def conv(f):
        return L.Conv2D(f, 3, padding="same", activation="selu", kernel_initializer="lecun_normal")

    return _vgg_selu(conv, input_shape, classes, dropout, "fashion_cnn")


def separable_cnn(input_shape=(28, 28, 1), classes=10, dropout=0.3):
    """The SeparableConv2D variant of :func:`fashion_cnn` (a Keras tutorial network): 184,234 params.

    The first conv (one input channel) stays a Conv2D; the other five become
    ``SeparableConv2D(f, 3, padding="same", activation="selu")``.
    """

    def conv(f):
        return L.SeparableConv2D(f, 3, padding="same", activation="selu")

    return _vgg_selu(conv, input_shape, classes, dropout, "separable_cnn")


def cifar_cnn(input_shape=(32, 32, 3), classes=10):
    """TensorFlow's CIFAR-10 tutorial CNN: 122,570 params.

    Conv2D(32, 3, relu) - MaxPool - Conv2D(64, 3, relu) - MaxPool - Conv2D(64, 3, relu) -
    Flatten - Dense(64, relu) - Dense(10, softmax) (the tutorial emits logits; same count).
    Three unpadded convs and two poolings need inputs of at least 18x18.
    """
    return Sequential(
        [
            L.Conv2D(32, 3, activation="relu", input_shape=input_shape),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu"),
            L.Flatten(),
            L.Dense(64, activation="relu"),
            L.Dense(classes, activation="softmax"),
        ],
        name="cifar_cnn",
    )


def _mini_block(filters, strides=1):
    """resnet_mini's basic block as one layer: conv-BN-ReLU-conv-BN + shortcut (1x1 conv + BN
    projection when the shape changes), then ReLU."""
    return L.ResidualBlock(
        [
            L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False),
            L.BatchNormalization(),
            L.Activation("relu"),
            L.Conv2D(filters, 3, padding="same", use_bias=False),
            L.BatchNormalization(),
        ],
        projection_batchnorm=True,
        activation="relu",
    )


def resnet_mini(input_shape=(28, 28, 1), classes=10):
    """A small ResNet (He et al. 2016, basic blocks) as a Sequential of ResidualBlock layers (the
    seeds' tutorial network): 78,426 params (672 of them BatchNorm moving statistics).

    Conv2D(16, 3, same) - BN - ReLU - block(16) - block(32, stride 2) - block(64, stride 2) -
    GlobalAveragePooling2D - Dense(10, softmax). :func:`resnet_small` is the functional
    version with explicit layer names and the zoo's BatchNorm momentum.
    """
    return Sequential(
        [
            L.Conv2D(16, 3, padding="same", use_bias=False, input_shape=input_shape),
            L.BatchNormalization(),
            L.Activation("relu"),
            _mini_block(16),
            _mini_block(32, strides=2),
            _mini_block(64, strides=2),
            L.GlobalAveragePooling2D(),
            L.Dense(classes, activation="softmax"),
        ],
        name="resnet_mini",
    )


# ---------------------------------------------------------------------------
# Segmentation
# ---------------------------------------------------------------------------


def segnet_small(input_shape=(28, 28, 1), classes=2, widths=(16, 32)):
    """An encoder-decoder segmentation net in the SegNet / FCN mould (Badrinarayanan, Kendall,
    Cipolla, "SegNet: a deep convolutional encoder-decoder architecture for image
    segmentation", TPAMI 2017; Long, Shelhamer, Darrell, "Fully convolutional networks for
    semantic segmentation", CVPR 2015).

    (conv 3x3-BN-ReLU + 2x2 max pool) x N down, then (stride-2 3x3 Conv2DTranspose-BN-ReLU)
    x N up, then a 1x1 conv with a per-pixel softmax: output ``(N, H, W, classes)``, one class
    score per pixel (train with sparse categorical cross-entropy on ``(N, H, W)`` labels).
    Scaled down: N = 2 stages of ``widths`` 16-32 instead of SegNet's five VGG-16 stages;
    learned transposed convolutions upsample instead of SegNet's max-pooling indices
    (FCN-style). H and W must be divisible by 2**N.
    """
    h, w = input_shape[0], input_shape[1]
    step = 2 ** len(widths)
    if (h is not None and h % step) or (w is not None and w % step):
        raise ValueError(
            f"segnet_small needs H and W divisible by {step} (2 ** number of stages). "
            f"Received: input_shape={tuple(input_shape)}"
        )
    inputs = Input(input_shape, name="input")
    x = inputs
    for i, width in enumerate(widths, start=1):
        x = _conv_bn(x, width, 3, f"enc{i}")
        x = L.MaxPooling2D(2, name=f"enc{i}_pool")(x)
    for i, width in enumerate(reversed(widths), start=1):
        x = L.Conv2DTranspose(width, 3, strides=2, padding="same", use_bias=False, name=f"dec{i}_deconv")(x)
        x = L.BatchNormalization(**_BN, name=f"dec{i}_bn")(x)
        x = L.Activation("relu", name=f"dec{i}_relu")(x)
    outputs = L.Conv2D(classes, 1, activation="softmax", name="pixel_scores")(x)
    return Model(inputs, outputs, name="segnet_small")


#: Every zoo network by name (the CLI's ``train --model`` choices).
MODELS = {
    "lenet5": lenet5,
    "alexnet_small": alexnet_small,
    "vgg_small": vgg_small,
    "inception_small": inception_small,
    "resnet_small": resnet_small,
    "densenet_small": densenet_small,
    "mobilenet_small": mobilenet_small,
    "shufflenet_small": shufflenet_small,
    "efficientnet_small": efficientnet_small,
    "regnet_small": regnet_small,
    "segnet_small": segnet_small,
    "mnist-cnn": mnist_cnn,
    "fashion-cnn": fashion_cnn,
    "separable-cnn": separable_cnn,
    "cifar-cnn": cifar_cnn,
    "resnet-mini": resnet_mini,
}

#: Training settings per network for ``python -m fastconv train --model NAME`` and ``bench/zoo.py``
#: (the issue's recipe: Adam, learning rate 1e-3, batch 64, at most 3 epochs on 8,000 bundled
#: MNIST images). ``lr_decay``: the learning rate is multiplied by it after every epoch (epoch ``e``
#: trains at ``lr * lr_decay ** e``). ``task`` is "classify" (integer labels) or "segment"
#: (:func:`digit_masks`). Deviations from the common recipe are explained in the model's docstring
#: (the tutorial CNNs': next to their entries).
TRAINING = {
    name: {"optimizer": "adam", "lr": 1e-3, "lr_decay": 1.0, "batch_size": 64, "task": "classify"}
    for name in MODELS
}
TRAINING["resnet_small"]["lr_decay"] = 0.3
TRAINING["segnet_small"]["task"] = "segment"
# the tutorial CNNs keep their tutorials' optimizer and batch size
TRAINING["mnist-cnn"]["batch_size"] = 128
TRAINING["fashion-cnn"].update(optimizer="sgd", lr=0.01, batch_size=32)
TRAINING["separable-cnn"]["batch_size"] = 32


def digit_masks(images, threshold=0.5):
    """Per-pixel labels for the bundled-data segmentation task: 1 where a digit's pixel is brighter
    than ``threshold`` (a fraction of full intensity), 0 for the background.

    ``images``: ``(N, H, W)`` or ``(N, H, W, 1)``, integers in [0, 255] (uint8) or floats in [0, 1].
    Returns ``(N, H, W)`` uint8 labels for ``sparse_categorical_crossentropy`` and ``mean_iou``.
    """
    x = np.asarray(images)
    if x.ndim == 4:
        if x.shape[-1] != 1:
            raise ValueError(f"digit_masks expects grey images (N, H, W[, 1]). Received shape {x.shape}")
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"digit_masks expects grey images (N, H, W[, 1]). Received shape {x.shape}")
    cut = threshold * 255.0 if x.dtype.kind in "iu" else threshold
    return (x > cut).astype(np.uint8)
