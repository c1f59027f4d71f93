"""Cropping2D (Keras semantics): the inverse of ZeroPadding2D, a slice forward and a zero pad
backward."""

from __future__ import annotations

import numpy as np

from fastconv.layers.base import Layer, check_data_format, register_layer, shape_str

__all__ = ["Cropping2D"]


def _normalize_cropping(cropping):
    """int, (symmetric_h, symmetric_w) or ((top, bottom), (left, right)) -> ((t, b), (l, r))."""
    msg = (
        "`cropping` should be either an int, a tuple of 2 ints (symmetric_height_crop, "
        "symmetric_width_crop), or a tuple of 2 tuples of 2 ints ((top_crop, bottom_crop), "
        f"(left_crop, right_crop)). Received: cropping={cropping!r}"
    )

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if is_int(cropping):
        c = int(cropping)
        out = ((c, c), (c, c))
    elif isinstance(cropping, (tuple, list)) and len(cropping) == 2:
        a, b = cropping
        if is_int(a) and is_int(b):
            out = ((int(a), int(a)), (int(b), int(b)))
        elif all(isinstance(p, (tuple, list)) and len(p) == 2 and all(is_int(v) for v in p) for p in (a, b)):
            out = ((int(a[0]), int(a[1])), (int(b[0]), int(b[1])))
        else:
            raise ValueError(msg)
    else:
        raise ValueError(msg)
    if min(out[0] + out[1]) < 0:
        raise ValueError(f"`cropping` must be non-negative. Received: cropping={cropping!r}")
    return out


@register_layer
class Cropping2D(Layer):
    """Remove rows and columns at the borders of images (Keras ``Cropping2D``):
    ``(N, H, W, C)`` -> ``(N, H - top - bottom, W - left - right, C)``.

    ``cropping``: an int (all four sides), ``(symmetric_height_crop, symmetric_width_crop)`` or
    ``((top, bottom), (left, right))``. Default ``((0, 0), (0, 0))``.
    """

    input_ndim = 4

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        self.cropping = _normalize_cropping(cropping)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        (t, b), (l, r) = self.cropping
        h, w, c = input_shape
        oh = None if h is None else h - t - b
        ow = None if w is None else w - l - r
        if (oh is not None and oh <= 0) or (ow is not None and ow <= 0):
            raise ValueError(
                f'Layer "{self.name}": `cropping` must leave at least one row and one column. Received: '
                f"cropping={[list(p) for p in self.cropping]}, input shape {shape_str(input_shape)}"
            )
        return (oh, ow, c)

    def _check_input(self, x):
        Layer._check_input(self, x)
        self.compute_output_shape(x.shape[1:])

    def call(self, x, training=False):
        (t, b), (l, r) = self.cropping
        h, w = x.shape[1:3]
        if training:
            self._cache = (h, w)
        return x[:, t : h - b, l : w - r]

    def call_backward(self, dy):
        h, w = self._need_cache()
        if not self.need_input_grad:
            return None
        (t, _), (l, _) = self.cropping
        dx = np.zeros((dy.shape[0], h, w, dy.shape[3]), dy.dtype)
        dx[:, t : t + dy.shape[1], l : l + dy.shape[2]] = dy
        return dx

    def get_config(self):
        config = super().get_config()
        config.update({"cropping": [list(p) for p in self.cropping], "data_format": "channels_last"})
        return config
