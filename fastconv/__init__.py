"""fastconv: fast CPU convolution kernels and a small Keras-like layer library."""
