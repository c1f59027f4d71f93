"""fastconv: fast CPU convolution kernels (Cython/OpenMP, NHWC) and a small Keras-like layer library."""
from fastconv import (  # noqa: F401  (sub-modules of the public API)
    augment, callbacks, datasets, filters, layers, losses, metrics, optimizers, plot, regularizers, utils,
)
from fastconv import models  # noqa: F401  (the model zoo, floor 7: after everything it builds on)
from fastconv import distributed  # noqa: F401  (data-parallel training on MPI; mpi4py loads on init())
from fastconv import onnx  # noqa: F401  (ONNX export, floor 7; the onnx package loads only when an export runs)
from fastconv._config import __version__, show_config
from fastconv._dispatch import get_num_threads, set_num_threads, set_simd
from fastconv.augment import ImageAugmenter
from fastconv.engine.functional import Model
from fastconv.engine.sequential import Sequential
from fastconv.engine.trainer import release_buffers, reuse_buffers
from fastconv.layers.input_layer import Input
from fastconv.ops import (
    avg_pool2d, avg_pool2d_grad, conv2d, conv2d_grad, conv_transpose2d, conv_transpose2d_grad,
    depthwise_conv2d, depthwise_conv2d_grad, global_avg_pool2d, global_avg_pool2d_grad,
    global_max_pool2d, global_max_pool2d_grad, max_pool2d, max_pool2d_grad,
)
from fastconv.saving import load_model, model_from_json
from fastconv.utils import to_categorical

__all__ = [
    "__version__", "show_config", "get_num_threads", "set_num_threads", "set_simd",
    "conv2d", "conv2d_grad", "depthwise_conv2d", "depthwise_conv2d_grad", "conv_transpose2d",
    "conv_transpose2d_grad", "max_pool2d", "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad",
    "global_avg_pool2d", "global_avg_pool2d_grad", "global_max_pool2d", "global_max_pool2d_grad",
    "release_buffers",
    "reuse_buffers",
    "Sequential", "Model", "Input", "load_model", "model_from_json", "ImageAugmenter", "to_categorical",
    "augment", "callbacks", "datasets", "filters", "layers", "losses", "metrics", "models", "optimizers", "plot",
    "regularizers", "utils",
    "distributed",
]
__all__ += ["onnx"]
