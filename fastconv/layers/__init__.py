"""Keras-like layers on fastconv's functional ops (NHWC; the layer contract is in layers/base.py).

Every layer has ``build``, ``compute_output_shape``, ``forward`` / ``backward``,
``get_weights`` / ``set_weights`` (Keras order and shapes), ``get_config`` /
``from_config``, ``trainable`` and ``count_params``.
"""

from fastconv.layers.base import (
    Layer,
    deserialize,
    get_registered_layer,
    register_layer,
    reset_name_counters,
    serialize,
)
from fastconv.layers.blocks import Branches, ResidualBlock
from fastconv.layers.conv import Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from fastconv.layers.core import Activation, Dense, Dropout, Flatten, ReLU, Softmax
from fastconv.layers.input_layer import Input, InputLayer
from fastconv.layers.normalization import BatchNormalization
from fastconv.layers.pooling import (
    AveragePooling2D,
    AvgPool2D,
    GlobalAveragePooling2D,
    MaxPool2D,
    MaxPooling2D,
)
from fastconv.layers.reshaping import UpSampling2D, ZeroPadding2D

__all__ = [
    "Activation",
    "AveragePooling2D",
    "AvgPool2D",
    "BatchNormalization",
    "Branches",
    "Conv2D",
    "Conv2DTranspose",
    "Dense",
    "DepthwiseConv2D",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling2D",
    "Input",
    "InputLayer",
    "Layer",
    "MaxPool2D",
    "MaxPooling2D",
    "ReLU",
    "ResidualBlock",
    "SeparableConv2D",
    "Softmax",
    "UpSampling2D",
    "ZeroPadding2D",
    "deserialize",
    "get_registered_layer",
    "register_layer",
    "reset_name_counters",
    "serialize",
]

# Merge and shape layers (the functional API's branches).
from fastconv.layers.merge import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
)
from fastconv.layers.pooling import GlobalMaxPooling2D
from fastconv.layers.shape_ops import ChannelShuffle, Reshape

__all__ += [
    "Add",
    "Average",
    "ChannelShuffle",
    "Concatenate",
    "GlobalMaxPooling2D",
    "Maximum",
    "Minimum",
    "Multiply",
    "Reshape",
    "Subtract",
]

# Day-two layers of a Keras user: activations with arguments, preprocessing and augmentation,
# noise, layer normalisation, cropping, Lambda.
from fastconv.layers.activation import ELU, LeakyReLU, PReLU
from fastconv.layers.cropping import Cropping2D
from fastconv.layers.lambda_layer import Lambda
from fastconv.layers.layer_normalization import LayerNormalization
from fastconv.layers.preprocessing import Normalization, Rescaling
from fastconv.layers.random_image import (
    RandomContrast,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from fastconv.layers.regularization import GaussianNoise, SpatialDropout2D

__all__ += [
    "Cropping2D",
    "ELU",
    "GaussianNoise",
    "Lambda",
    "LayerNormalization",
    "LeakyReLU",
    "Normalization",
    "PReLU",
    "RandomContrast",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "Rescaling",
    "SpatialDropout2D",
]
