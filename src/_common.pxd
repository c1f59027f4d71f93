# Shared declarations for the kernel modules.
#
# Index glossary used in every kernel:
#   n batch, oh/ow output row/column, ih/iw input row/column, kh/kw kernel row/column,
#   c input channel, k output channel, g group, sh/sw stride, ph/pw padding (top/left),
#   dh/dw dilation (dw is also the weight gradient; context says which).

cdef extern from "fc_common.h" nogil:
    int FC_ISA_GENERIC
    int FC_ISA_AVX2
    int FC_ISA_AVX512
    int fc_cpu_isa()
    int fc_have_openmp()
    int fc_num_procs()
    const char *fc_compiler_version()

ctypedef fused floating:
    float
    double


cdef inline int out_pixel_stride(str op, Py_ssize_t *shape, Py_ssize_t *strides, Py_ssize_t itemsize) except -1:
    """Elements from one pixel to the next of an NHWC output (N, H, W, C) whose channels are
    contiguous: C, or more when it is a channel slice of a wider tensor (a concatenation's branch).
    The kernels address pixel (n, y, x) at ((n*H + y)*W + x) * stride, so the rows and images must
    follow on at that stride; anything else raises."""
    cdef Py_ssize_t ps = shape[3], want
    cdef int i
    if shape[3] > 1 and strides[3] != itemsize:
        raise ValueError(f"{op}: out's channels must be contiguous (a channel slice of a C-contiguous NHWC "
                         f"tensor). Received: shape {[shape[j] for j in range(4)]}, strides "
                         f"{[strides[j] for j in range(4)]}")
    for i in range(2, -1, -1):
        if shape[i] > 1:
            ps = strides[i] // itemsize
            break
    for i in range(2, -1, -1):
        want = ps * itemsize
        if i < 2:
            want *= shape[i + 1] * (shape[2] if i == 0 else 1)
        if shape[i] > 1 and strides[i] != want:
            raise ValueError(f"{op}: out must be C-contiguous or a channel slice of a C-contiguous NHWC "
                             f"tensor. Received: shape {[shape[j] for j in range(4)]}, strides "
                             f"{[strides[j] for j in range(4)]}")
    if ps < shape[3] or ps > 2147483647:
        raise ValueError(f"{op}: out's pixel stride {ps} is outside [{shape[3]}, 2**31). Received: shape "
                         f"{[shape[j] for j in range(4)]}, strides {[strides[j] for j in range(4)]}")
    return <int>ps
