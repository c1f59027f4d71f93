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
