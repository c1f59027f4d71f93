"""conv2d and conv_transpose2d, forward and backward: validate -> plan -> allocate -> kernel.

Transposed convolution reuses the algebra: its forward is conv2d's input gradient, its input
gradient is conv2d's forward and its weight gradient is conv2d's weight gradient with x and dy
swapped.  All arithmetic runs in fastconv._kernels.conv with the GIL released.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from fastconv import _dispatch
from fastconv._kernels import conv as _k
from fastconv._shapes import pair, positive_pair, resolve_padding, transpose_geometry, window_output_size
from fastconv.ops import _plan
from fastconv.ops import elementwise as _ew
from fastconv.ops import winograd as _wino
from fastconv.ops._validate import aligned_empty, as_float_array, check_bias, check_dy, check_output, check_rank


class _ConvArgs:
    """Validated arguments of one conv2d-shaped problem (x: conv input, y: conv output)."""

    __slots__ = ("dilation", "dtype", "groups", "k_hw", "out_hw", "pads", "stride", "w", "x_shape")

    def __init__(self, op, x_shape, w, stride, dilation, groups, pads, out_hw):
        self.x_shape, self.w, self.dtype = x_shape, w, w.dtype
        self.k_hw = w.shape[:2]
        # a stride along an axis with one output, or a dilation along a one-tap axis, changes no
        # value: taking 1 there gives the answer for any stride (PyTorch's, for a stride past the
        # input) while keeping the kernels' int geometry small
        self.stride = tuple(1 if out_hw[a] == 1 else stride[a] for a in range(2))
        self.dilation = tuple(1 if self.k_hw[a] == 1 else dilation[a] for a in range(2))
        self.groups, self.pads, self.out_hw = groups, pads, out_hw
        _check_geometry(op, self)

    @property
    def y_shape(self):
        return (self.x_shape[0], self.out_hw[0], self.out_hw[1], self.w.shape[3])


def _check_geometry(op, a: _ConvArgs) -> None:
    """Every size of the problem fits the kernels' 32-bit geometry (ops/_plan.py)."""
    _check_geometry_of(op, tuple(a.x_shape), tuple(a.w.shape), a.stride, a.dilation, a.pads, a.out_hw, a.groups)


@lru_cache(maxsize=512)
def _check_geometry_of(op, x_shape, w_shape, stride, dilation, pads, out_hw, groups) -> None:
    # cached per shape: the check is pure, and building it cost ~7 us of a small conv's ~20 us
    N, H, W, C = x_shape
    KH, KW, Cg, K = w_shape
    (pt, pb), (pl, pr) = pads
    quantities = [("batch size", N), ("input height", H), ("input width", W), ("input channels", C),
                  ("output channels", K), ("padded height", H + pt + pb), ("padded width", W + pl + pr),
                  ("output height", out_hw[0]), ("output width", out_hw[1]),
                  ("dilated kernel height", (KH - 1) * dilation[0] + 1),
                  ("dilated kernel width", (KW - 1) * dilation[1] + 1),
                  ("strided output height", (out_hw[0] - 1) * stride[0] + 1),
                  ("strided output width", (out_hw[1] - 1) * stride[1] + 1),
                  # a tap row's reduction (KW merged taps of Cr channels), forward and input gradient
                  ("reduction length KH*KW*C_in//groups", KH * KW * Cg),
                  ("reduction length KH*KW*C_out//groups", KH * KW * (K // groups))]
    _plan.check_int_geometry(op, quantities, f" (x.shape={x_shape}, w.shape={w_shape}, "
                                             f"stride={stride}, padding={pads}, dilation={dilation})")


def _check_groups(op, groups, c_in, w_shape, w_name="w", layout="(KH, KW, C_in // groups, C_out)"):
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int. Received: groups={groups!r}")
    groups = int(groups)
    w_shape = tuple(w_shape)
    if c_in % groups or w_shape[3] % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels ({c_in}) and output "
                         f"channels ({w_shape[3]}). Received: {w_name}.shape={w_shape}")
    if w_shape[2] * groups != c_in:
        raise ValueError(f"{op}: x has {c_in} channels but {w_name} expects {w_shape[2] * groups} "
                         f"({w_name}.shape={w_shape}, layout {layout}, groups={groups})")
    if max(w_shape[0], w_shape[1]) > _plan.MAX_TAPS:
        raise ValueError(f"{op}: kernels up to {_plan.MAX_TAPS}x{_plan.MAX_TAPS} are supported. "
                         f"Received: {w_name}.shape={w_shape}")
    if min(w_shape) < 1:
        raise ValueError(f"{op}: {w_name} must not be empty. Received: {w_name}.shape={w_shape}")
    return groups


def _conv_args(op, x, w, stride, padding, dilation, groups) -> _ConvArgs:
    check_rank(op, "x", x, 4, "NHWC (N, H, W, C)")
    check_rank(op, "w", w, 4, "(KH, KW, C_in // groups, C_out)")
    # the checks are pure functions of the shapes and options: remembered (a third of a small
    # conv's Python time; a training step repeats the same few dozen problems)
    groups, stride, dilation, pads, out_hw = _plan.cached_geometry(_geometry_of, op, x.shape, w.shape, stride,
                                                                   padding, dilation, groups)
    return _ConvArgs(op, x.shape, w, stride, dilation, groups, pads, out_hw)


def _geometry_of(op, x_shape, w_shape, stride, padding, dilation, groups) -> tuple:
    groups = _check_groups(op, groups, x_shape[3], w_shape)
    stride = positive_pair("stride", stride, op)
    dilation = positive_pair("dilation", dilation, op)
    k_hw = w_shape[:2]
    pads = resolve_padding(padding, x_shape[1:3], k_hw, stride, dilation, op)
    out_hw = tuple(window_output_size(x_shape[1 + a], k_hw[a], stride[a], dilation[a], *pads[a]) for a in range(2))
    check_output(op, out_hw, x_shape, k_hw)
    return groups, stride, dilation, pads, out_hw


def _pack(w, packing, G, isa):
    KH, KW = w.shape[:2]
    Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko = packing
    vb = _k.block_size(isa, w.dtype)
    nkb = -(-Ko // vb)
    wp = aligned_empty((G * nkb * KH * KW * Cr * vb,), w.dtype)  # whole-line vector loads
    _k.pack_weights(w.reshape(-1), KH, KW, G, Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko, wp, isa)
    return wp


_force_narrow: bool | None = None  # tests: True/False forces the narrow choice, None picks by shape
_force_grouped: bool | None = None  # tests: False keeps grouped convs off the group-pair tile


def _block_diagonal(w, G, s):
    """The (KH, KW, s*Cg, K) weight of G // s super-groups, each holding s groups of w (KH, KW, Cg, K)
    on its block diagonal (zeros elsewhere): the same convolution with G // s groups."""
    KH, KW, Cg, K = w.shape
    Kg = K // G
    w6 = w.reshape(KH, KW, Cg, G // s, s, Kg)
    big = np.zeros((KH, KW, s, Cg, G // s, s, Kg), w.dtype)
    for j in range(s):
        big[:, :, j, :, :, j, :] = w6[:, :, :, :, j, :]
    return big.reshape(KH, KW, s * Cg, K)


def _pair_weights(w, G, forward, isa):
    """w (KH, KW, Cg, K) of G groups (an even number, Kg or Cg = one vector) packed for the
    group-pair tile (src/conv_grouped_impl.h): pairs of groups as dense blocks of 2 vectors.
    Returns (packed weights, reduced channels per group, pairs)."""
    KH, KW, Cg, K = w.shape
    Kg, pairs = K // G, G // 2
    if forward:
        packing = _plan.forward_packing(KH, KW, Cg, K, pairs)
        return _pack(w, packing, pairs, isa), Cg, pairs
    # input gradient: reduce over the group's Kg outputs, produce its Cg inputs; lane v of a pair
    # is group 2p + v // Cg, input channel v % Cg
    a = np.ascontiguousarray(w.reshape(KH, KW, Cg, pairs, 2, Kg).transpose(0, 1, 3, 5, 4, 2))
    vb = 2 * Cg
    packing = (Kg, vb, KW * pairs * Kg * vb, pairs * Kg * vb, Kg * vb, vb, 1)
    return _pack(a, packing, pairs, isa), Kg, pairs


def _gather_pairs(op, inp, w, packing, bias, out, plans, G, relu, isa, threads, act) -> bool:
    """Run a grouped gather conv on the group-pair tile when _plan.group_pairing takes it; False
    (nothing done) otherwise."""
    Cr, Ko = packing[:2]
    vb = _k.block_size(isa, w.dtype)
    s = _plan.group_pairing(G, Cr, Ko, vb // 2)
    if not s or _force_grouped is False:
        return False
    forward = packing[6] == 1
    if s > 1:
        w, G = _block_diagonal(w, G, s), G // s
    wp, cr, pairs = _pair_weights(w, G, forward, isa)
    KH, KW = w.shape[:2]
    N = inp.shape[0]
    plans = [_plan.rows_ascending(plan) for plan in plans]  # taps read top-down in x
    tiles = [_plan.pair_tile_plan(plan, N, KW, cr, w.dtype.itemsize) for plan in plans]
    _k.gather_conv(inp, wp, bias, out,
                   [(*plan.as_tuple(), t.ntiles, t.tb, t.rowtiles, t.mergex, t.rowseg)
                    for plan, t in zip(plans, tiles)],
                   KH, KW, pairs, cr, vb, relu, isa, threads, act[0], act[1], True)
    _dispatch.last_kernel[op + "_epilogue"] = "tile" if act[0] else "register" if relu else "none"
    _dispatch.last_kernel[op] = "grouped" if any(t.path for t in tiles) else "none"
    return True


def _gather(op, inp, w, packing, bias, out, plans, G, relu, isa, threads, act=(0, 0.0), recipe=None):
    """Run the gather convolutions `plans` (one per stride phase) of inp with weight w into out.

    act: (code, alpha) of an element-wise activation (ops.elementwise.CODES, not relu: that one is
    `relu`) applied after each tile by the tile kernel, or in a second pass after the narrow kernel;
    the place is recorded in _dispatch.last_kernel[op + "_epilogue"] ("tile" or "pass").
    recipe: a dict that receives the register-tile call's shape-only arguments (see _RECIPES), left
    empty on the other paths."""
    KH, KW = w.shape[:2]
    Cr, Ko = packing[:2]
    N, ICt = inp.shape[0], inp.shape[3]
    tiles = [_plan.tile_plan(plan, N, KW, ICt, Cr, w.dtype.itemsize, threads) for plan in plans]
    narrow = _force_narrow
    if narrow is None:
        narrow = _plan.use_narrow(Cr, Ko, _k.narrow_vlen(isa, w.dtype))
        # groups of exactly one vector of outputs (RegNet's group width 8 on AVX2): the group-pair
        # tile fills every lane (1 thread, Zen 3, narrow / pair time: 3x3 s2 g4 32->32 @14 1.9x,
        # s2 g8 64->64 @7 2.6x, g8 64->64 @4 2.1x, g4 32->32 @14 1.5x, s2 g2 16->16 @28 1.2x)
        if (narrow and G > 1 and _force_grouped is not False and Ko > _plan.NARROW_MAX_KO
                and Ko == _k.block_size(isa, w.dtype) // 2):
            narrow = not _plan.group_pairing(G, Cr, Ko, Ko)
    if not narrow:
        # the register tiles (not the few-channel rows, whose row kernels take kernel rows in
        # order) read their taps top-down in x
        plans = [plan if t.rowseg else _plan.rows_ascending(plan) for plan, t in zip(plans, tiles)]
    if not narrow and G > 1 and _gather_pairs(op, inp, w, packing, bias, out, plans, G, relu, isa, threads, act):
        return
    if narrow:
        wn = aligned_empty((_k.narrow_weights_size(isa, w.dtype, KH, KW, G, Cr, Ko),), w.dtype)
        _k.pack_narrow(w.reshape(-1), KH, KW, G, *packing, wn, isa)
        for plan, t in zip(plans, tiles):
            split = _plan.narrow_plan(N, plan.grid[0], plan.grid[1], threads).args()
            _k.narrow_conv(inp, wn, bias, out, plan.grid, plan.taps_y, plan.taps_x, t.mergex, KH, KW, G, Cr,
                           Ko, relu, isa, split)
        path = "narrow" if any(t.path for t in tiles) else None
        _dispatch.last_kernel[op + "_epilogue"] = "register" if relu else "none"
        if act[0]:
            _ew.apply_code(out, act[0], act[1], isa, threads)
            _dispatch.last_kernel[op + "_epilogue"] = "pass"
    else:
        wp = _pack(w, packing, G, isa)
        args = [(*plan.as_tuple(), t.ntiles, t.tb, t.rowtiles, t.mergex, t.rowseg) for plan, t in zip(plans, tiles)]
        _k.gather_conv(inp, wp, bias, out, args, KH, KW, G, Cr, Ko, relu, isa, threads, act[0], act[1])
        _dispatch.last_kernel[op + "_epilogue"] = "tile" if act[0] else "register" if relu else "none"
        # the path of the first phase that had pixels
        path = next((t.path for t in tiles if t.path), None)
        if recipe is not None and not act[0]:
            recipe.update(packing=packing, G=G, args=args, KH=KH, KW=KW, Cr=Cr, Ko=Ko, relu=relu, isa=isa,
                          threads=threads, path=path or "none",
                          epilogue=_dispatch.last_kernel[op + "_epilogue"])
    # "narrow", "rowk", "rowseg" or "tiles"; "none" when no plan had a pixel
    _dispatch.last_kernel[op] = path or "none"


def _pointwise(a: _ConvArgs) -> bool:
    """1x1, stride 1, no padding: a plain (N*H*W, C) x (C, K) product, run as one row of N*H*W
    pixels while that row fits the kernels' int geometry (else in its own N, H, W layout)."""
    N, H, W, _ = a.x_shape
    return (tuple(a.k_hw) == (1, 1) and a.stride == (1, 1) and a.pads == ((0, 0), (0, 0))
            and N * H * W < _plan.INT_GEOMETRY_LIMIT)


def _pixel_row(t: np.ndarray) -> np.ndarray:
    """View an NHWC tensor as one image row of N*H*W pixels (no tile then straddles a row end); a
    channel slice of a wider tensor keeps its pixel stride."""
    if t.flags.c_contiguous:
        return t.reshape(1, 1, -1, t.shape[3])
    return np.lib.stride_tricks.as_strided(t, (1, 1, t.size // t.shape[3], t.shape[3]), (0, 0, *t.strides[2:]))


def channel_slice(t) -> bool:
    """True for an NHWC array whose pixels are evenly spaced with their channels contiguous: a
    channel slice ``a[..., c0:c1]`` of a C-contiguous ``a`` (what the forward kernels write into)."""
    if type(t) is not np.ndarray or t.ndim != 4 or t.strides[3] != t.itemsize:
        return False
    if t.flags.c_contiguous:
        return True
    _, h, w, c = t.shape
    ps = t.strides[2]
    return ps >= c * t.itemsize and ps % t.itemsize == 0 and t.strides[1] == w * ps and t.strides[0] == h * w * ps


# Epilogues the Winograd kernel applies (none, ReLU); the other activations of
# activations.KERNEL_EPILOGUES arrive as `act` and _forward applies them in a second pass.
_WINO_EPILOGUES = (False, True, None, "none", "relu")


def _conv_algo(a: _ConvArgs, conv_hw, epilogue=False, transposed=False) -> str:
    """"direct", "winograd4" or "winograd2" for this problem (conv_hw: the output extent of the
    convolution that runs: y for the forward, x for the input gradient, whose channels are swapped:
    transposed=True); see _dispatch.set_conv_algo."""
    want = _dispatch.get_conv_algo()
    if want == "direct" or not _wino.eligible(a.k_hw, a.stride, a.dilation, a.groups):
        return "direct"
    if isinstance(epilogue, np.ndarray) or not any(epilogue is e or (type(epilogue) is type(e) and epilogue == e)
                                                   for e in _WINO_EPILOGUES):
        return "direct"
    if want in ("winograd4", "winograd2"):
        return want
    # a dilated conv runs as its polyphase sub-convs: the rule sizes by them
    n, oh, ow = _wino.phase_geometry(a.x_shape[0], conv_hw[0], conv_hw[1], a.dilation)
    if want == "winograd":
        return _plan.wino_tile(oh, ow)
    c_in, c_out = a.x_shape[3], a.w.shape[3]
    if transposed:
        c_in, c_out = c_out, c_in
    return _plan.conv_algo(n, oh, ow, c_in, c_out, a.dtype.itemsize)


def _winograd(op, algo, inp, w, bias, out, pads_tl, relu, isa, flip=False, dilation=(1, 1)):
    work = out.size * 9 * inp.shape[3]
    _wino.run(inp, w, bias, out, pads_tl, 4 if algo == "winograd4" else 2, relu, isa, _dispatch.threads_for(work),
              flip, dilation)
    _dispatch.last_kernel[op] = algo


def _forward(a: _ConvArgs, x, bias, relu, op, act=(0, 0.0), out=None, recipe=None):
    """y = act(conv2d(x, w) + bias) for validated arguments (x C-contiguous, a.dtype); into `out`
    (C-contiguous, a.y_shape, a.dtype) when given.  recipe: see _gather."""
    y = aligned_empty(a.y_shape, a.dtype) if out is None else out
    if y.size == 0:
        return y
    isa = _dispatch.level_for(op, a.dtype)
    # Winograd applies bias and ReLU in its output transform; another activation then runs as a
    # second pass over y (Winograd's savings outweigh that pass: the selu CNN's 3x3 layers)
    algo = _conv_algo(a, a.out_hw, relu)
    if algo != "direct":
        _winograd(op, algo, x, a.w, bias, y, (a.pads[0][0], a.pads[1][0]), bool(relu), isa, dilation=a.dilation)
        _dispatch.last_kernel[op + "_epilogue"] = "register" if relu else "none"
        if act[0]:
            _ew.apply_code(y, act[0], act[1], isa, _dispatch.threads_for(y.size))
            _dispatch.last_kernel[op + "_epilogue"] = "pass"
        return y
    KH, KW, Cg, K = a.w.shape
    if _pointwise(a):
        x, y_out = _pixel_row(x), _pixel_row(y)
        plan = _plan.forward_plan(y_out.shape[1:3], (1, 1), (1, 1), (0, 0), (1, 1))
    else:
        y_out = y
        plan = _plan.forward_plan(a.out_hw, a.k_hw, a.stride, (a.pads[0][0], a.pads[1][0]), a.dilation)
    work = y.size * KH * KW * Cg
    _gather(op, x, a.w, _plan.forward_packing(KH, KW, Cg, K, a.groups), bias, y_out, [plan], a.groups, relu, isa,
            _dispatch.threads_for(work), act, recipe)
    if recipe:
        recipe.update(out_shape=a.y_shape, pointwise=y_out is not y, flip=False)
    return y


def _input_grad(a: _ConvArgs, dy, bias, op, recipe=None):
    """dx (shape a.x_shape) of conv2d for dy (shape a.y_shape); + bias when given (transposed conv).
    recipe: see _gather."""
    dx = aligned_empty(a.x_shape, a.dtype)
    if dx.size == 0:
        return dx
    isa = _dispatch.level_for(op, a.dtype)
    algo = _conv_algo(a, a.x_shape[1:3], transposed=True)
    if algo != "direct":
        # dx = the 3x3 conv of dy with the rotated, transposed weight, "full" padding 2*d - p
        dh, dw = a.dilation
        _winograd(op, algo, dy, a.w, bias, dx, (2 * dh - a.pads[0][0], 2 * dw - a.pads[1][0]), False, isa, flip=True,
                  dilation=a.dilation)
        return dx
    KH, KW, Cg, K = a.w.shape
    flip = _plan.flips_columns(a.stride, a.dilation)
    w = np.ascontiguousarray(a.w[:, ::-1]) if flip else a.w
    threads = _dispatch.threads_for(dy.size * KH * KW * Cg)
    dx_out, in_hw = dx, a.x_shape[1:3]
    if _pointwise(a):
        dy, dx_out = _pixel_row(dy), _pixel_row(dx)
        in_hw = dx_out.shape[1:3]
    plans = _plan.input_grad_plans(in_hw, a.k_hw, a.stride, (a.pads[0][0], a.pads[1][0]), a.dilation)
    _gather(op, dy, w, _plan.input_grad_packing(KH, KW, Cg, K, a.groups), bias, dx_out, plans, a.groups, False, isa,
            threads, recipe=recipe)
    if recipe:
        recipe.update(out_shape=a.x_shape, pointwise=dx_out is not dx, flip=flip)
    return dx


_force_planar_wgrad: bool | None = None  # tests: True/False forces the weight-gradient kernel


def _weight_grad(a: _ConvArgs, x, dy, op):
    dw = np.empty(a.w.shape, dtype=a.dtype)
    db = np.empty(a.w.shape[3], dtype=a.dtype)
    isa = _dispatch.level_for(op, a.dtype)
    algo = _conv_algo(a, a.out_hw)
    if algo != "direct" and _dispatch.get_conv_algo() == "auto" and not _plan.wino_wgrad_pays(
            *_wino.phase_geometry(a.x_shape[0], *a.out_hw, a.dilation)):
        algo = "direct"
    if algo != "direct" and dy.size:
        _wino.weight_grad(x, dy, dw, db, (a.pads[0][0], a.pads[1][0]), 4 if algo == "winograd4" else 2, isa,
                          _dispatch.threads_for(dy.size * 9 * a.w.shape[2]), a.dilation)
        _dispatch.last_kernel[op + ":weight"] = algo
        return dw, db
    KH, KW, Cg, K = a.w.shape
    N, OH, OW = dy.shape[:3]
    vlen = _k.narrow_vlen(isa, a.dtype)
    # _force_planar_wgrad (tests) forces the column kernel (True) or the dense channel tile (False)
    pair = _force_planar_wgrad is None and _force_grouped is not False and _plan.use_pair_wgrad(a.groups, K // a.groups,
                                                                 _k.block_size(isa, a.dtype) // 2)
    planar = _force_planar_wgrad
    if planar is None:
        masked_tail = a.dtype == np.float32 and isa >= _dispatch.LEVELS["avx2"]
        planar = not pair and _plan.use_planar_wgrad(K // a.groups, vlen, masked_tail)
    pair = pair and not planar
    wp = _plan.wgrad_plan(N * OH, OW, K, x.shape[3], KW, a.stride[1], a.dilation[1], x.dtype.itemsize,
                          _dispatch.threads_for(dy.size * KH * KW * Cg), planar, vlen)
    _k.weight_grad(x, dy, dw, db, a.stride[0], a.stride[1], a.pads[0][0], a.pads[1][0],
                   a.dilation[0], a.dilation[1], a.groups, wp.nchunks, wp.rblk, isa, wp.threads, wp.planar, pair)
    _dispatch.last_kernel[op + ":weight"] = "planar" if wp.planar else "grouped" if pair else "tiles"
    return dw, db


# ---- repeated calls: the register-tile call of a shape, remembered ----
# A call's validation and planning depend only on shapes, dtypes, the arguments and the run-time
# settings; in Python they cost ~50 us, a tenth of a first layer's forward (1->32 @28, batch 32).
# The first call of a key runs the full path and, when it ends in the register-tile kernel
# (_gather's recipe), keeps that call's shape-only arguments; the next calls with the same key
# allocate, pack the weight and run the kernel.  Other paths (Winograd, narrow, group pairs, an
# activation pass, `out=`) are never remembered.  The key holds the arguments' repr (1, True and
# np.int64(1) stay apart, as in _plan.cached_geometry) and every setting the path reads.
_RECIPES: dict = {}
_RECIPES_MAX = 256


def _recipe_key(op, x, w, bias, args):
    if (type(x) is not np.ndarray or type(w) is not np.ndarray or x.dtype != w.dtype
            or x.dtype.char not in "fd" or not x.flags.c_contiguous or not w.flags.c_contiguous):
        return None
    if bias is not None and (type(bias) is not np.ndarray or bias.dtype != x.dtype or not bias.flags.c_contiguous):
        return None
    return (op, x.shape, w.shape, x.dtype.char, None if bias is None else bias.shape, repr(args),
            _dispatch.simd_level(), _dispatch.get_num_threads(), _dispatch._MIN_WORK_PER_THREAD,
            _dispatch.get_conv_algo(), _force_narrow, _force_grouped, _plan.TILE_L2_BYTES)


def _remember(key, recipe) -> None:
    if key is not None and "args" in recipe and "out_shape" in recipe:
        if len(_RECIPES) >= _RECIPES_MAX:
            _RECIPES.clear()
        _RECIPES[key] = recipe


def _run_recipe(op, r, x, w, bias):
    """What _forward / _input_grad did for this key's first call, on new x, w, bias."""
    _dispatch.record(op, r["isa"])
    y = aligned_empty(r["out_shape"], x.dtype)
    xi, yo = (_pixel_row(x), _pixel_row(y)) if r["pointwise"] else (x, y)
    if r["flip"]:
        w = np.ascontiguousarray(w[:, ::-1])
    wp = _pack(w, r["packing"], r["G"], r["isa"])
    _k.gather_conv(xi, wp, bias, yo, r["args"], r["KH"], r["KW"], r["G"], r["Cr"], r["Ko"], r["relu"], r["isa"],
                   r["threads"], 0, 0.0)
    _dispatch.last_kernel[op + "_epilogue"] = r["epilogue"]
    _dispatch.last_kernel[op] = r["path"]
    return y


def conv2d(x, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1, relu=False, activation=None,
           alpha=None, out=None):
    """2-D convolution (cross-correlation) in NHWC.

    x (N, H, W, C), w (KH, KW, C // groups, K), bias (K,) or None -> y (N, OH, OW, K).
    padding: int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same" (TensorFlow's rule).
    relu=True returns relu(conv + bias), applied by the kernel as it stores each output (no second
    pass over y); NaN passes through as in ``ops.relu``. Its gradient: ``conv2d_grad`` of
    ``relu_grad(dy, y)``.
    activation: None or a name of ``ops.elementwise.CODES`` ("selu", "elu", "swish", "gelu", ...),
    alpha its parameter (elu's alpha, leaky_relu's slope): act(conv + bias), applied to each output
    tile right after the kernel stores it (relu in registers); equal to ``ops.elementwise.
    activation`` of the plain conv bit for bit. Its gradient: ``conv2d_grad`` of
    ``activation_grad(dy, y or pre-activation, activation)``.
    out: an array of y's shape and dtype to write y into (None: a fresh one): C-contiguous, or a
    channel slice ``a[..., c0:c1]`` of a C-contiguous NHWC ``a`` (a concatenation's branch: the
    kernels store each pixel's channels ``a.shape[3]`` elements apart; the other channels of ``a``
    are not touched).

    >>> y = conv2d(np.ones((1, 5, 5, 1), np.float32), np.ones((3, 3, 1, 2), np.float32), padding="same")
    >>> y.shape
    (1, 5, 5, 2)
    """
    op = "conv2d"
    key = None
    if out is None and activation is None and alpha is None:
        key = _recipe_key(op, x, w, bias, (stride, padding, dilation, groups, relu))
        r = _RECIPES.get(key) if key is not None else None
        if r is not None:
            return _run_recipe(op, r, x, w, bias)
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w, x.dtype)
    a = _conv_args(op, x, w, stride, padding, dilation, groups)
    if bias is not None:
        bias = as_float_array(op, "bias", bias, x.dtype)
        check_bias(op, bias, w.shape[3], w.shape)
    relu, act = _epilogue(op, relu, activation, alpha)
    if out is not None:
        _check_out(op, out, a.y_shape, a.dtype, sliced=True)
        if act[0] and not out.flags.c_contiguous:
            # the Winograd and narrow kernels apply such an activation in a second pass over a
            # contiguous y: computed whole, then copied into the slice
            out[...] = _forward(a, x, bias, relu, op, act)
            return out
    recipe = {} if key is not None else None
    y = _forward(a, x, bias, relu, op, act, out, recipe)
    if recipe:
        _remember(key, recipe)
    return y


def _check_relu(op, relu) -> bool:
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"{op}: relu must be True or False. Received: relu={relu!r}")
    return bool(relu)


def _epilogue(op, relu, activation, alpha) -> tuple[bool, tuple[int, float]]:
    """(relu in the register tile, (code, alpha) of another activation after the tile)."""
    relu = _check_relu(op, relu)
    if activation is None or activation == "linear":
        return relu, (0, 0.0)
    code, alpha = _ew.check_activation(op, activation, alpha)
    if relu:
        raise ValueError(f"{op}: give relu=True or activation, not both. Received: relu=True, "
                         f"activation={activation!r}")
    if code == _ew.CODES["relu"]:
        return True, (0, 0.0)
    return False, (code, alpha)


def _check_out(op, out, shape, dtype, sliced=False) -> None:
    """out (or, ``sliced``, a channel slice of a C-contiguous NHWC array: see channel_slice)."""
    if (type(out) is not np.ndarray or out.shape != tuple(shape) or out.dtype != dtype
            or not (out.flags.c_contiguous or (sliced and channel_slice(out))) or not out.flags.writeable):
        got = (f"{out.dtype} {out.shape} strides {out.strides}" if isinstance(out, np.ndarray)
               else type(out).__name__)
        also = " (or a channel slice of a C-contiguous NHWC array with more channels)" if sliced else ""
        raise ValueError(f"{op}: out must be a writeable C-contiguous {np.dtype(dtype)} array of shape "
                         f"{tuple(shape)}{also}. Received: {got}")


def conv2d_grad(dy, x, w, *, stride=1, padding=0, dilation=1, groups=1, need_dx=True):
    """Gradients of conv2d: dy (N, OH, OW, K) -> (dx (N, H, W, C), dw like w, db (K,)).

    need_dx=False skips the input gradient (a network's first layer) and returns dx=None.
    """
    op = "conv2d_grad"
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w, x.dtype)
    dy = as_float_array(op, "dy", dy, x.dtype)
    a = _conv_args(op, x, w, stride, padding, dilation, groups)
    check_dy(op, dy, a.y_shape)
    dx = _input_grad(a, dy, None, op) if need_dx else None
    dw, db = _weight_grad(a, x, dy, op)
    return dx, dw, db


def _transpose_args(op, x, w, stride, padding, output_padding, dilation, groups):
    """The conv2d problem whose input gradient is this transposed convolution."""
    check_rank(op, "x", x, 4, "NHWC (N, H, W, C)")
    check_rank(op, "w", w, 4, "(KH, KW, C_out // groups, C_in)")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int. Received: groups={groups!r}")
    if x.shape[3] != w.shape[3] or x.shape[3] % groups or w.shape[3] % groups:
        raise ValueError(f"{op}: x has {x.shape[3]} channels but w expects {w.shape[3]} "
                         f"(w.shape={w.shape}, layout (KH, KW, C_out // groups, C_in), groups={groups})")
    stride = positive_pair("stride", stride, op)
    dilation = positive_pair("dilation", dilation, op)
    out_pad = pair("output_padding", output_padding, op)
    for a in range(2):
        if not 0 <= out_pad[a] < max(stride[a], dilation[a]):
            raise ValueError(f"{op}: output_padding must be >= 0 and smaller than max(stride, dilation) "
                             f"= {max(stride[a], dilation[a])}. Received: output_padding={output_padding!r}")
    out_hw, tops = transpose_geometry(padding, x.shape[1:3], w.shape[:2], stride, dilation, out_pad, op)
    check_output(op, out_hw, x.shape, w.shape[:2])
    y_shape = (x.shape[0], out_hw[0], out_hw[1], w.shape[2] * groups)
    conv_w = w  # (KH, KW, C_out // g, C_in) is a conv2d weight from C_out to C_in channels
    _check_groups(op, int(groups), y_shape[3], conv_w.shape)
    pads = ((tops[0], 0), (tops[1], 0))
    a = _ConvArgs(op, y_shape, conv_w, stride, dilation, int(groups), pads, x.shape[1:3])
    return a


def conv_transpose2d(x, w, bias=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Transposed convolution: the input gradient of conv2d with weight w.

    x (N, H, W, C_in), w (KH, KW, C_out // groups, C_in), bias (C_out,) -> y (N, H_out, W_out, C_out),
    H_out = (H - 1)*stride - 2*padding + dilation*(KH - 1) + output_padding + 1 for integer padding;
    "same" gives H*stride, "valid" H*stride + max(KH_eff - stride, 0).
    """
    op = "conv_transpose2d"
    key = _recipe_key(op, x, w, bias, (stride, padding, output_padding, dilation, groups))
    r = _RECIPES.get(key) if key is not None else None
    if r is not None:
        return _run_recipe(op, r, x, w, bias)
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w, x.dtype)
    a = _transpose_args(op, x, w, stride, padding, output_padding, dilation, groups)
    if bias is not None:
        bias = as_float_array(op, "bias", bias, x.dtype)
        check_bias(op, bias, a.x_shape[3], w.shape)
    recipe = {} if key is not None else None
    y = _input_grad(a, x, bias, op, recipe)
    if recipe:
        _remember(key, recipe)
    return y


def conv_transpose2d_grad(dy, x, w, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1,
                          need_dx=True):
    """Gradients of conv_transpose2d: dy (N, H_out, W_out, C_out) -> (dx, dw, db).

    need_dx=False skips the input gradient and returns dx=None.
    """
    op = "conv_transpose2d_grad"
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w, x.dtype)
    dy = as_float_array(op, "dy", dy, x.dtype)
    a = _transpose_args(op, x, w, stride, padding, output_padding, dilation, groups)
    check_dy(op, dy, a.x_shape)
    # dx = conv2d(dy, w) on the conv problem whose input is dy's shape and output is x's shape
    dx = _forward(a, dy, None, False, op) if need_dx else None
    dw, _ = _weight_grad(a, dy, x, op)
    db = np.empty(a.x_shape[3], dtype=x.dtype)
    _k.channel_sum(dy.reshape(-1, a.x_shape[3]), db)
    return dx, dw, db


def dense(x, w, bias=None, *, relu=False, activation=None, alpha=None, out=None):
    """Fully connected layer on the conv kernel: x (N, C) @ w (C, K) + bias -> (N, K);
    relu=True applies relu in the kernel's epilogue, activation= / alpha= any element-wise
    activation after each tile, out= an (N, K) array to write into (see conv2d).

    A 1x1 convolution over N one-pixel images; it keeps Dense layers off NumPy's multithreaded
    BLAS, whose threads would otherwise compete with the kernels' OpenMP threads for the cores.
    """
    op = "dense"
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w, x.dtype)
    check_rank(op, "x", x, 2, "(N, features)")
    check_rank(op, "w", w, 2, "(features, units)")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"{op}: x has {x.shape[1]} features but w expects {w.shape[0]} (w.shape={w.shape})")
    if bias is not None:
        bias = as_float_array(op, "bias", bias, x.dtype)
        check_bias(op, bias, w.shape[1], w.shape)
    _epilogue(op, relu, activation, alpha)  # errors name dense
    if out is not None:
        _check_out(op, out, (x.shape[0], w.shape[1]), x.dtype)
        out = out.reshape(x.shape[0], 1, 1, w.shape[1])
    y = conv2d(x.reshape(x.shape[0], 1, 1, x.shape[1]), w.reshape(1, 1, *w.shape), bias,
               relu=_check_relu(op, relu), activation=activation, alpha=alpha, out=out)
    return y.reshape(x.shape[0], w.shape[1])


def dense_grad(dy, x, w, *, need_dx=True):
    """Gradients of dense: dy (N, K) -> (dx (N, C) or None, dw (C, K), db (K,))."""
    op = "dense_grad"
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w, x.dtype)
    dy = as_float_array(op, "dy", dy, x.dtype)
    check_rank(op, "x", x, 2, "(N, features)")
    check_rank(op, "w", w, 2, "(features, units)")
    check_dy(op, dy, (x.shape[0], w.shape[1]))
    dx, dw, db = conv2d_grad(dy.reshape(dy.shape[0], 1, 1, dy.shape[1]), x.reshape(x.shape[0], 1, 1, x.shape[1]),
                             w.reshape(1, 1, *w.shape), need_dx=need_dx)
    return (None if dx is None else dx.reshape(x.shape)), dw.reshape(w.shape), db
