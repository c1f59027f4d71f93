"""Functional ops: stateless forward / backward pairs on NHWC arrays, one file per family."""
from fastconv.ops.conv import (  # noqa: F401
    conv2d,
    conv2d_grad,
    conv_transpose2d,
    conv_transpose2d_grad,
    dense,
    dense_grad,
)
from fastconv.ops.depthwise import depthwise_conv2d, depthwise_conv2d_grad  # noqa: F401
from fastconv.ops.elementwise import activation, activation_grad, softmax, softmax_grad  # noqa: F401
from fastconv.ops.pool import (  # noqa: F401
    avg_pool2d,
    avg_pool2d_grad,
    global_avg_pool2d,
    global_avg_pool2d_grad,
    global_max_pool2d,
    global_max_pool2d_grad,
    max_pool2d,
    max_pool2d_grad,
)
from fastconv.ops.norm import (  # noqa: F401
    batch_norm,
    batch_norm_grad,
    batch_norm_train,
    batch_norm_train_grad,
    relu,
    relu6,
    relu6_grad,
    relu_grad,
)
