"""fastconv: fast CPU convolution kernels (Cython/OpenMP, NHWC) and a small Keras-like layer library."""
from fastconv._config import __version__, show_config
from fastconv._dispatch import get_num_threads, set_num_threads, set_simd
from fastconv.ops import (
    avg_pool2d, avg_pool2d_grad, conv2d, conv2d_grad, conv_transpose2d, conv_transpose2d_grad,
    depthwise_conv2d, depthwise_conv2d_grad, global_avg_pool2d, global_avg_pool2d_grad,
    max_pool2d, max_pool2d_grad,
)

__all__ = [
    "__version__", "show_config", "get_num_threads", "set_num_threads", "set_simd",
    "conv2d", "conv2d_grad", "depthwise_conv2d", "depthwise_conv2d_grad", "conv_transpose2d",
    "conv_transpose2d_grad", "max_pool2d", "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad",
    "global_avg_pool2d", "global_avg_pool2d_grad",
]
