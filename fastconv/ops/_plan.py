"""The plan step of every op family: from validated shapes to kernel geometry and thread split.

A plan is plain Python data (tap offsets, output grids, packing strides, row splits, the variant),
computed once per call and unit-tested on its own (tests/test_plan.py); the kernel wrappers fill
their C struct from it and run the loop (src/_parallel.pxd run_chunks).  Convolution: GatherPlan,
TilePlan, WgradPlan, narrow_plan; depthwise: DepthwisePlan; pooling: PoolPlan; norm: norm_plan.

Every member of the convolution family is a *gather convolution* (src/conv_geom.h): output grid pixel (oy, ox)
reads input position (oy*ay + by[i], ox*ax + bx[j]) through tap (i, j) with kernel index (ky[i], kx[j]).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from fastconv import _dispatch
from fastconv._kernels import conv as _kc

MAX_TAPS = _kc.MAX_TAPS  # kernel extent per axis that the C geometry holds (FC_MAXT, src/conv_geom.h)
RB = _kc.RB              # output pixels per register tile (FC_RB, src/conv_geom.h)

# The kernels keep the geometry of a call in 32-bit ints (src/conv_geom.h: extents, positions, tap
# offsets, channel counts, reduction lengths) and form every product of two of them in 64-bit
# (ptrdiff_t).  Each such quantity stays below INT_GEOMETRY_LIMIT, so that a position plus a tap
# offset, a tile width or another extent cannot pass 2**31 either.  The batch size only ever enters
# products, so it may take any int value.
INT_GEOMETRY_LIMIT = 2**30
BATCH_LIMIT = 2**31


_GEOMETRY_CACHE: dict = {}


def cached_geometry(fn, *args):
    """fn(*args) for a pure geometry function of shapes and arguments, remembered per argument tuple
    (its checks and arithmetic cost more than a small kernel call).  The key is the arguments' repr,
    so 1, True, 1.0 and np.int64(1) stay apart (the checks refuse some of them) and lists work.
    Errors are not remembered: they raise each time."""
    key = (fn, repr(args))
    value = _GEOMETRY_CACHE.get(key)
    if value is None:
        value = fn(*args)
        if len(_GEOMETRY_CACHE) >= 1024:
            _GEOMETRY_CACHE.clear()
        _GEOMETRY_CACHE[key] = value
    return value


def check_int_geometry(op: str, quantities, context: str = "") -> None:
    """Refuse, before any kernel runs, a call whose geometry the kernels' int fields cannot hold.

    quantities: (name, value) pairs, each to be below INT_GEOMETRY_LIMIT; a name starting with
    "batch" is held to BATCH_LIMIT instead.
    """
    for name, value in quantities:
        limit = BATCH_LIMIT if name.startswith("batch") else INT_GEOMETRY_LIMIT
        if value >= limit:
            exp = 31 if limit == BATCH_LIMIT else 30
            raise ValueError(f"{op}: the {name} must be below 2**{exp} (the kernels index it in 32 bits). "
                             f"Received: {name}={value}{context}")


# ---- sizes per CPU (docs/kernels.md, "Tiles per CPU"): from the caches _dispatch.cpu_info() reads ----
# The register tiles are compiled per SIMD level (6 pixels x 2 vectors everywhere; see
# docs/kernels.md for why that holds on Zen 1, Zen 3 / Intel AVX2 and AVX-512); what depends on the
# machine at run time is how much data a block of tiles keeps in L2 and when Winograd's transformed
# weight still fits the L3.  Each rule reproduces the constant measured on the 1 MiB-L2, 32 MiB-L3
# development host and scales it by the cache for other CPUs, within bounds nothing was measured past.

def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def tile_l2_bytes(cpu) -> int:
    """Input a chunk of direct-conv tiles reads (kept in L2 across the output-channel blocks, beside
    one block of packed weights, up to 9 * C * 2 vectors): an eighth of the L2, 32-128 KiB."""
    return _clamp(cpu.l2 // 8, 32 << 10, 128 << 10)


def wino_block_bytes(cpu) -> int:
    """A Winograd block's transformed input and products (V and M): 3/16 of the L2, 96-192 KiB."""
    return _clamp(cpu.l2 * 3 // 16, 96 << 10, 192 << 10)


def wino_max_channel_product(cpu) -> int:
    """Largest C * K auto runs as Winograd: every block of tiles streams the whole transformed weight
    (36 * C * K floats), which must stay within half the L3 (128^2 to 256^2)."""
    return _clamp(cpu.l3 // (2 * 36 * 4), 128 * 128, 256 * 256)


def size_for_cpu(cpu=None) -> None:
    """Set the CPU-dependent sizes below from `cpu` (default _dispatch.cpu_info()) and forget the
    plans built with the old ones."""
    global TILE_L2_BYTES, WINO_BLOCK_BYTES, WINO_MAX_CHANNEL_PRODUCT
    cpu = cpu or _dispatch.cpu_info()
    TILE_L2_BYTES = tile_l2_bytes(cpu)
    WINO_BLOCK_BYTES = wino_block_bytes(cpu)
    WINO_MAX_CHANNEL_PRODUCT = wino_max_channel_product(cpu)
    for fn in (tile_plan, wino_plan):
        fn.cache_clear()


@dataclass(frozen=True)
class GatherPlan:
    grid: tuple            # (OH, OW, oy0, ox0, out_ay, out_ax, ay, ax)
    taps_y: tuple          # ((by, ky), ...)
    taps_x: tuple

    def as_tuple(self) -> tuple:
        """(grid, taps_y, taps_x), the form the kernel wrapper takes."""
        return self.grid, self.taps_y, self.taps_x


# The plans depend on shapes only and are immutable: cached, since building them in Python cost
# ~20 us per call, a few per cent of a small conv.
@lru_cache(maxsize=256)
def forward_plan(out_hw, k_hw, stride, pad_tl, dilation) -> GatherPlan:
    """conv2d forward: y[oy, ox] gathers x[oy*s - p + kh*d, ...]."""
    taps_y = tuple((kh * dilation[0] - pad_tl[0], kh) for kh in range(k_hw[0]))
    taps_x = tuple((kw * dilation[1] - pad_tl[1], kw) for kw in range(k_hw[1]))
    grid = (out_hw[0], out_hw[1], 0, 0, 1, 1, stride[0], stride[1])
    return GatherPlan(grid, taps_y, taps_x)


@lru_cache(maxsize=256)
def rows_ascending(g: GatherPlan) -> GatherPlan:
    """g with its kernel-row taps in ascending input-row order (the kernels find each tap's weights
    by its kernel row, so any order gives the same sums up to rounding).  The input gradient's
    taps come in kernel order, which reads dy rows bottom-up: the tiles read top-down ran the
    group-pair input gradient of 32x28x28x64 g4 1.4x faster on 1 thread."""
    ty = tuple(sorted(g.taps_y))
    return g if ty == g.taps_y else GatherPlan(g.grid, ty, g.taps_x)


def _phase_taps(r: int, k: int, s: int, p: int, d: int):
    """Taps of stride phase r of the input gradient: kernel rows with (r + p - kh*d) % s == 0."""
    return tuple(((r + p - kh * d) // s, kh) for kh in range(k) if (r + p - kh * d) % s == 0)


def flips_columns(stride, dilation) -> bool:
    """Whether the input-gradient plans read the weight with its columns reversed.

    With stride 1 and dilation 1 along W, dx column iw reads dy columns iw + pw - kw: reversing kw
    makes the taps consecutive input columns in kernel order, which the kernel merges into one
    long reduction per kernel row (conv_impl.h, mergex).
    """
    return stride[1] == 1 and dilation[1] == 1


@lru_cache(maxsize=256)
def input_grad_plans(in_hw, k_hw, stride, pad_tl, dilation) -> tuple[GatherPlan, ...]:
    """conv2d input gradient as one gather conv per stride phase (no zero-stuffing of dy).

    dx rows ih = rh + sh*j read dy rows j + (rh + ph - kh*dh) / sh for the kernel rows of phase rh.
    Phases with no taps still get a plan: their pixels are written with zeros.  When
    flips_columns(), kernel column index j of a tap refers to the column-reversed weight.
    """
    if flips_columns(stride, dilation):
        taps_x = tuple((pad_tl[1] - (k_hw[1] - 1 - j), j) for j in range(k_hw[1]))
        return tuple(GatherPlan((in_hw[0] if stride[0] == 1 else len(range(rh, in_hw[0], stride[0])), in_hw[1],
                                 rh, 0, stride[0], 1, 1, 1),
                                _phase_taps(rh, k_hw[0], stride[0], pad_tl[0], dilation[0]), taps_x)
                     for rh in range(min(stride[0], in_hw[0])))
    plans = []
    for rh in range(min(stride[0], in_hw[0])):
        jh = len(range(rh, in_hw[0], stride[0]))
        ty = _phase_taps(rh, k_hw[0], stride[0], pad_tl[0], dilation[0])
        for rw in range(min(stride[1], in_hw[1])):
            jw = len(range(rw, in_hw[1], stride[1]))
            tx = _phase_taps(rw, k_hw[1], stride[1], pad_tl[1], dilation[1])
            plans.append(GatherPlan((jh, jw, rh, rw, stride[0], stride[1], 1, 1), ty, tx))
    return tuple(plans)


@dataclass(frozen=True)
class TilePlan:
    """How the gather kernel walks one GatherPlan's output (src/conv_impl.h).

    rowtiles: tiles of RB pixels aligned to output rows (else flattened over N*OH*OW);
    mergex: the column taps are consecutive input columns in kernel order, merged into one
    reduction per kernel row; rowseg: copy the input rows a whole output row reads (few input
    channels), chunks are whole rows; path: "rowk" (rowseg with the constant-shape rows of
    fc_rowk), "rowseg" or "tiles", None without pixels; ntiles: tiles of the plan; tb: tiles per
    chunk of the dynamic schedule.
    """
    ntiles: int
    tb: int
    rowtiles: bool
    mergex: bool
    rowseg: bool
    path: str | None


# rowseg only for this few input channels per group, and rows at most this wide
ROWSEG_MAX_CR = 16
ROWSEG_MAX_OW = 1024
TILE_L2_BYTES = 131072  # input a chunk of tiles reads (set per CPU by size_for_cpu at the end)
TILE_MAX_TB = 8


@lru_cache(maxsize=1024)
def tile_plan(g: GatherPlan, N: int, KW: int, ICt: int, Cr: int, itemsize: int, threads: int) -> TilePlan:
    """The tile layout of gather convolution `g` over N images of ICt input channels, Cr of them
    reduced per group, for `threads` threads (was _tile_plan in src/conv.pyx)."""
    OH, OW, _, _, _, _, _, ax = g.grid
    nty, ntx = len(g.taps_y), len(g.taps_x)
    mergex = (ntx == KW and ICt == Cr
              and all(k == i and b == g.taps_x[0][0] + i for i, (b, k) in enumerate(g.taps_x)))
    P = N * OH * OW
    if P == 0:
        return TilePlan(0, 1, False, mergex, False, None)
    # row-aligned tiles on wide maps (only edge tiles need a gathered segment); flattened tiles on
    # narrow ones, where a partial tile per row would waste too many register-tile slots
    rowtiles = OW % RB == 0 or OW >= 4 * RB
    tpr = -(-OW // RB)
    ntiles = N * OH * tpr if rowtiles else -(-P // RB)
    # tiles per chunk: the input they read stays within ~128 KiB (in L2) across the passes over the
    # output-channel blocks, and one block of packed weights is reused across all of them
    bspan = 1
    if ntx:
        bspan = max(b for b, _ in g.taps_x) - min(b for b, _ in g.taps_x) + 1
    patch = nty * max(ntx * RB, (RB - 1) * ax + bspan) * Cr * itemsize
    tb = max(1, min(TILE_MAX_TB, TILE_L2_BYTES // max(patch, 1)))
    rows = N * OH
    # few input channels: copying the rows a whole output row reads is cheap next to its arithmetic,
    # and spares every tile its own edge handling (first layers)
    rowseg = rowtiles and Cr <= ROWSEG_MAX_CR and OW <= ROWSEG_MAX_OW and rows >= 2 * threads
    path = "tiles"
    if rowseg:
        # chunks of whole rows, about 16 per thread: a row is only a few microseconds of work, and
        # taking one chunk from the shared counter per row cost ~10 % with two threads (tb is an
        # int of the kernel: at most 2**20 rows per chunk)
        tb = tpr * min(2**20, max(1, rows // (16 * threads)))
        path = "rowseg"
        # merged column taps on consecutive kernel rows: the constant-shape rows of fc_rowk
        if (mergex and all(k == g.taps_y[0][1] + i for i, (_, k) in enumerate(g.taps_y))
                and _kc.rowk_shape(ntx * Cr, ax * Cr)):
            path = "rowk"
    return TilePlan(ntiles, tb, rowtiles, mergex, rowseg, path)


# Narrow-output kernel (src/conv_narrow_impl.h): for gather convs with at most this many output
# channels per group it vectorises over the reduction channels instead of the outputs.
NARROW_MAX_KO = _kc.NARROW_MAX_KO  # FC_NK_MAXKO, src/conv_narrow_impl.h


def use_narrow(Cr: int, Ko: int, vlen: int) -> bool:
    """Whether a gather conv reducing Cr channels into Ko outputs (per group) runs the narrow
    kernel, whose vectors hold vlen reduction channels (narrow_vlen of the SIMD level and dtype).

    With vectors of 8 or more lanes it also wins for up to NARROW_WIDE_KO outputs (passes of 4
    outputs each): the output-vectorised tile then leaves lanes idle (the input gradient of LeNet's
    5x5 6->16 conv, 16 -> 6 channels: 1.75x faster on AVX-512, 1.44x on AVX2; 32 -> 8 and 64 -> 12
    on 3x3: 1.5-2.1x; at 16 outputs the two tie)."""
    return Cr >= vlen and (Ko <= NARROW_MAX_KO or (vlen >= 8 and Ko < NARROW_WIDE_KO))


NARROW_WIDE_KO = 16


# ---- grouped convolution: the group-pair tile (src/conv_grouped_impl.h) ----


def group_pairing(G: int, Cr: int, Ko: int, vlen: int) -> int:
    """Super-group factor s of the group-pair tile for a gather conv of G groups reducing Cr channels
    into Ko outputs per group, with vlen-element vectors (tile: 6 pixels x 2 vectors); 0 when the
    dense tile runs.

    The dense tile computes 2 * vlen channels of ONE group: a group of Ko <= vlen outputs fills at
    most half of it.  The pair tile gives each of its two vectors its own group (each FMA
    broadcasts its own group's input), so for Ko == vlen every lane is useful; groups of
    Ko = vlen / s (s = 2, 4, ...) are first merged s at a time into super-groups of vlen channels
    with block-diagonal weights (s times the FMAs of the groups, vs 2 * vlen / Ko in the dense
    tile).  Needs an even number of (super-)groups.
    """
    if G < 2 or Ko > vlen or vlen % Ko or G % (2 * (vlen // Ko)):
        return 0
    return vlen // Ko


def use_pair_wgrad(G: int, Kg: int, vlen: int) -> bool:
    """Whether the weight gradient runs the group-pair tile (src/conv_grouped_impl.h): groups of
    exactly one vector of output channels, an even number of them."""
    return G >= 2 and G % 2 == 0 and Kg == vlen


@lru_cache(maxsize=1024)
def pair_tile_plan(g: GatherPlan, N: int, KW: int, Cr: int, itemsize: int) -> TilePlan:
    """tile_plan's layout for the group-pair tile: tiles of RB pixels (row-aligned on wide maps),
    never rowseg or merged columns; tb tiles per chunk keep the input they read (both groups' Cr
    channels per tap) within TILE_L2_BYTES."""
    OH, OW, _, _, _, _, _, ax = g.grid
    nty, ntx = len(g.taps_y), len(g.taps_x)
    P = N * OH * OW
    if P == 0:
        return TilePlan(0, 1, False, False, False, None)
    rowtiles = OW % RB == 0 or OW >= 4 * RB
    ntiles = N * OH * -(-OW // RB) if rowtiles else -(-P // RB)
    bspan = max(b for b, _ in g.taps_x) - min(b for b, _ in g.taps_x) + 1 if ntx else 1
    patch = nty * max(ntx * RB, (RB - 1) * ax + bspan) * 2 * Cr * itemsize
    tb = max(1, min(TILE_MAX_TB, TILE_L2_BYTES // max(patch, 1)))
    return TilePlan(ntiles, tb, rowtiles, False, False, "grouped")


@dataclass(frozen=True)
class WgradPlan:
    """Weight gradient of conv2d: rows (n, oh) of dy cut into nchunks chunks (each summed into its
    own partial, added in chunk order), rblk rows per block inside a chunk; planar: the few-channel
    kernel (src/conv_wgrad_planar_impl.h, vectorised along output columns) instead of the channel tile."""
    nchunks: int
    threads: int
    rblk: int
    planar: bool = False


WGRAD_BLOCK_BYTES = 262144  # a block's dy rows and padded x rows
WGRAD_MIN_CHUNKS = 4        # up to this many threads give bit-identical results


def use_planar_wgrad(Kg: int, vlen: int, masked_tail: bool = False) -> bool:
    """Whether the weight gradient runs the column-vectorised kernel.

    The channel tile (6 reduction values (kw, c) x 2 vectors of output channels) runs a group's
    channels past its whole blocks as one vector tile plus, where the SIMD level has masked loads
    (float32 on AVX2 and AVX-512: masked_tail), one masked vector; without them the rest runs in
    scalar loops. The column kernel runs full vectors along the rows of a block whatever the
    channels. With 2 * vlen channels or more the channel tile won every measured shape, a kernel row
    of few (kw, c) values included (1-3 input channels, 3x3: the column kernel then spends more on
    transposing dy than on FMAs). With masked tails on 8-lane vectors (AVX2) it also wins from one
    vector of channels on (1 thread, Zen 3, column / channel tile time: DenseNet's 3x3 16 -> 8 at
    28x28 1.6x, 1x1 40 -> 20 2.3x, 44 -> 22 2.7x, 5x5 6 -> 8 1.4x; 3x3 24 -> 12 about even); on
    AVX-512 LeNet's 16 channels were measured faster in the column kernel, so 2 * vlen stays there.
    """
    if masked_tail and vlen <= 8:
        return Kg < vlen
    return Kg < 2 * vlen


@lru_cache(maxsize=256)
def wgrad_plan(rows: int, OW: int, K: int, C: int, KW: int, sw: int, dil_w: int, itemsize: int,
               threads: int, planar: bool = False, vlen: int = 16) -> WgradPlan:
    if planar:
        row_bytes = (K + 6 + C * sw) * (OW + (KW - 1) * dil_w // sw) * itemsize  # the planes' rows
    else:
        row_bytes = (OW * K + ((OW - 1) * sw + (KW - 1) * dil_w + 1) * C) * itemsize
    # the column kernel sums each tile's lanes once per block: longer blocks amortise that
    rblk = max(1, min(256 if planar else 64, WGRAD_BLOCK_BYTES // max(row_bytes, 1)))
    nchunks = max(1, min(rows, max(WGRAD_MIN_CHUNKS, threads)))
    return WgradPlan(nchunks, max(1, min(threads, nchunks)), rblk, planar)


def forward_packing(KH, KW, Cg, K, G):
    """Packing arguments (Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko) of a (KH, KW, Cg, K) weight, forward."""
    Kg = K // G
    return Cg, Kg, KW * Cg * K, Cg * K, Kg, K, 1


def input_grad_packing(KH, KW, Cg, K, G):
    """Same weight packed for the input gradient: reduce over k, produce c."""
    Kg = K // G
    return Kg, Cg, KW * Cg * K, Cg * K, Kg, 1, K


# ---------------------------------------------------------------------------------------------
# The row split every wrapper runs (src/_parallel.pxd run_chunks): `units` cut into `nchunks`
# contiguous chunks [units*j // nchunks, units*(j+1) // nchunks), run by `threads` threads.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowSplit:
    units: int     # rows (or elements) of the job
    nchunks: int   # contiguous chunks; the schedule hands them out
    threads: int   # threads of the parallel region (<= nchunks)
    dynamic: bool  # dynamic schedule (chunks taken from a shared counter) or one static chunk per thread

    def args(self) -> tuple:
        """(units, nchunks, threads, dynamic): the form the kernel wrappers take (run_split)."""
        return self.units, self.nchunks, self.threads, self.dynamic

    def bounds(self, j: int) -> tuple[int, int]:
        """Units [u0, u1) of chunk j (what run_chunks computes)."""
        return self.units * j // self.nchunks, self.units * (j + 1) // self.nchunks


def static_split(units: int, threads: int) -> RowSplit:
    """One contiguous range of units per thread (depthwise, pooling: every unit costs the same)."""
    threads = max(1, min(threads, units))
    return RowSplit(units, threads, threads, False)


# norm family (src/norm.pyx): elements per reduction chunk (a shape-only choice: it fixes the order
# of the float64 sums, so the statistics do not depend on the thread count) and per element-wise
# chunk; at most NORM_MAX_CHUNKS partials are kept.
NORM_REDUCE_ELEMS = 32768
NORM_PASS_ELEMS = 65536
NORM_MAX_CHUNKS = 64


@lru_cache(maxsize=256)
def norm_plan(rows: int, row_elems: int, reduce: bool, threads: int) -> RowSplit:
    """Chunks of whole rows of about NORM_REDUCE_ELEMS (reductions) or NORM_PASS_ELEMS
    (element-wise passes) elements: 1 <= chunks <= min(rows, NORM_MAX_CHUNKS), dynamic schedule."""
    per = NORM_REDUCE_ELEMS if reduce else NORM_PASS_ELEMS
    n = max(1, min(rows * row_elems // per, NORM_MAX_CHUNKS, rows))
    return RowSplit(rows, n, max(1, min(threads, n)), True)


# ---- kernel variants the depthwise and pooling kernels pick inside C (reported, tests assert) ----

GENERIC_VECTOR_BYTES = 16  # the generic level's vectors (fc_dw_vector_bytes / fc_pool_vector_bytes)


def depthwise_variant(K: int, M: int, itemsize: int) -> str:
    """The row code src/depthwise_impl.h runs for K = C*M output channels: "scalar" when K is
    narrower than a generic vector, "multiplier" (input rows expanded to K channels) for M > 1,
    else "vector"."""
    if K * itemsize < GENERIC_VECTOR_BYTES:
        return "scalar"
    return "multiplier" if M > 1 else "vector"


def pool_backward_variant(k_hw, stride, saved_argmax: bool, dilation=(1, 1)) -> str:
    """src/pool_impl.h's backward: "argmax" (a saved argmax, gathered per dx row), "fused"
    (undilated non-overlapping windows, stride >= window: one pass over output rows owning their
    band of dx rows) or "gather" (overlapping or dilated windows: a gather per dx row)."""
    if saved_argmax:
        return "argmax"
    if tuple(dilation) != (1, 1):
        return "gather"
    return "fused" if stride[0] >= k_hw[0] and stride[1] >= k_hw[1] else "gather"


# ---- narrow-output conv (src/conv.pyx narrow_conv) ----

NARROW_BW = _kc.NARROW_BW       # grid columns per work unit (FC_NK_BW, src/conv_narrow_impl.h)
NARROW_CHUNKS_PER_THREAD = 8    # dynamic chunks per thread: one slowed by another process takes fewer


@lru_cache(maxsize=256)
def narrow_plan(N: int, OH: int, OW: int, threads: int) -> RowSplit:
    """Work units (grid row, block of NARROW_BW columns) of the narrow kernel (fc_nk_count's count),
    in chunks of about units // (8 * threads) units, dynamic schedule.  Every unit's arithmetic is
    the same whichever chunk holds it, so the cut does not change the result."""
    units = N * OH * -(-OW // NARROW_BW)
    per = max(1, units // (NARROW_CHUNKS_PER_THREAD * max(threads, 1)))
    nchunks = -(-units // per)
    return RowSplit(units, nchunks, max(1, min(threads, nchunks)), True)


# ---- depthwise family (src/depthwise.pyx) ----

DW_BLOCK_BYTES = 98304  # dy a backward block reads (its dx and x rows are about stride times that)


@dataclass(frozen=True)
class DepthwisePlan:
    """One depthwise call as the kernels run it.

    geometry: the fc_dwp fields (N, H, W, C, M, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw), padding
    top/left; variant: the row code src/depthwise_impl.h runs (depthwise_variant); block_rows: dy
    rows per block of the backward (each block's weight-gradient and input-gradient rows run back
    to back, so dy is read once), 0 for the forward; split: the units (output rows (n, oh) forward,
    blocks of block_rows rows of one image backward) as one contiguous range per thread, static
    schedule.  The backward sums chunk j's dw, db into partial j and adds the partials in chunk
    order (the chunks are the threads: dw, db depend on the thread count by float rounding).
    """
    geometry: tuple
    variant: str
    block_rows: int
    split: RowSplit

    @property
    def out_shape(self) -> tuple:
        N, _, _, C, M, OH, OW = self.geometry[:7]
        return N, OH, OW, C * M

    @property
    def taps(self) -> int:
        return self.geometry[7] * self.geometry[8]


@lru_cache(maxsize=256)
def depthwise_plan(geometry: tuple, itemsize: int, backward: bool, threads: int) -> DepthwisePlan:
    N, _, _, C, M, OH, OW = geometry[:7]
    K = C * M
    variant = depthwise_variant(K, M, itemsize)
    if not backward:
        return DepthwisePlan(geometry, variant, 0, static_split(N * OH, threads))
    if N * OH * OW * K == 0:
        return DepthwisePlan(geometry, variant, 1, static_split(0, threads))
    block_rows = max(1, min(OH, DW_BLOCK_BYTES // (OW * K * itemsize)))
    return DepthwisePlan(geometry, variant, block_rows, static_split(N * -(-OH // block_rows), threads))


# ---- pooling family (src/pool.pyx) ----


@dataclass(frozen=True)
class PoolPlan:
    """One pooling call as the kernels run it.

    geometry: the fc_poolp fields (N, H, W, C, OH, OW, KH, KW, sh, sw, ph, pw, include_pad, dh, dw,
    eh, ew): padding top/left, dilation, and eh, ew = H + bottom, W + right padding (global pooling: the whole image as one window); variant: "window" (forward),
    pool_backward_variant's "argmax" / "fused" / "gather", or "global"; split: the units (output rows
    (n, oh) forward and fused backward, dx rows (n, ih) for the gather and argmax backward, images
    for the global forward, dx rows for its backward) as one contiguous range per thread, static
    schedule (every element is written by one thread: results do not depend on the thread count);
    scratch_bytes: per-thread scratch the plan sizes (the global forward's channel sums), 0 when the
    kernel sizes its own (fc_pool_scratch_*) or needs none.
    """
    geometry: tuple
    variant: str
    split: RowSplit
    scratch_bytes: int = 0

    @property
    def out_shape(self) -> tuple:
        N, _, _, C, OH, OW = self.geometry[:6]
        return N, OH, OW, C


@lru_cache(maxsize=256)
def pool_plan(geometry: tuple, backward: bool, saved_argmax: bool, threads: int) -> PoolPlan:
    """Max or average pooling over windows; backward: the units src/pool_impl.h's
    fc_pool_backward_units counts (the wrapper checks that they agree)."""
    N, H, _, _, OH, _, KH, KW, sh, sw = geometry[:10]
    if not backward:
        return PoolPlan(geometry, "window", static_split(N * OH, threads))
    variant = pool_backward_variant((KH, KW), (sh, sw), saved_argmax, geometry[13:15])
    return PoolPlan(geometry, variant, static_split(N * (OH if variant == "fused" else H), threads))


@lru_cache(maxsize=256)
def global_pool_plan(x_shape: tuple, backward: bool, itemsize: int, threads: int) -> PoolPlan:
    """Global average pooling: forward over images, each thread summing C + 16 channels of a pixel
    block in the input type and in float64 (pool_impl.h; fc_pool_scratch_* would size an H x W
    window's gather lists instead, ~40*H*W bytes), backward over dx rows."""
    N, H, W, C = x_shape
    geometry = (N, H, W, C, 1, 1, H, W, 1, 1, 0, 0, 0, 1, 1, H, W)
    if backward:
        return PoolPlan(geometry, "global", static_split(N * H, threads))
    return PoolPlan(geometry, "global", static_split(N, threads), (C + 16) * (itemsize + 8) + 128)


# ---- Winograd F(m x m, 3x3) (src/winograd.pyx, fastconv/ops/winograd.py) ----

WINO_BLOCK_BYTES = 196608  # a block's V and M, kept in L2 (set per CPU by size_for_cpu at the end)
WINO_MAX_TB = 48           # tiles per block at most (a multiple of the register tile's 6 rows)
WINO_BLOCKS_PER_THREAD = 4  # blocks per thread at least, while blocks can shrink (dynamic schedule)


@dataclass(frozen=True)
class WinoPlan:
    """One Winograd call: m x m output tiles (ntiles = N * ceil(OH/m) * ceil(OW/m)), tb tiles per
    block (a multiple of 6), one block per chunk of a dynamic schedule over `threads` threads.
    Every tile's arithmetic is the same in any block, so the result does not depend on the split."""
    m: int
    tb: int
    ntiles: int
    nchunks: int
    threads: int


@lru_cache(maxsize=256)
def wino_plan(N: int, OH: int, OW: int, m: int, tile_bytes: int, threads: int) -> WinoPlan:
    """tile_bytes: scratch one tile of a block takes (alpha^2 rows of V and of M)."""
    ntiles = N * -(-OH // m) * -(-OW // m)
    tb = max(6, min(WINO_MAX_TB, WINO_BLOCK_BYTES // max(1, 6 * tile_bytes) * 6))
    while tb > 6 and -(-ntiles // tb) < WINO_BLOCKS_PER_THREAD * threads:
        tb -= 6
    nchunks = max(1, -(-ntiles // tb))
    return WinoPlan(m, tb, ntiles, nchunks, max(1, min(threads, nchunks)))


# Winograd weight gradient: blocks of at most WINO_WGRAD_TB tiles whose transformed x and dy take at
# most WINO_WGRAD_BLOCK_BYTES (tile_bytes each), cut into max(WINO_WGRAD_MIN_CHUNKS, threads) chunks of
# equal blocks (a short last block costs a full pass over the chunk's 36 x C x K sums), each chunk
# summed into its own partial and added in chunk order: 1 and 2 threads give bit-identical results.
# Each chunk folds its 36 x C x K sums by G^T . G: 2 chunks instead of 4 made the Fashion-MNIST selu
# CNN's training step 4 % faster (1 thread, median of 20 interleaved rounds, 1.04x [1.03-1.08]).
# TB 24 / 32 / 48 / 64 measured (1 thread, float32, AVX-512, F(4x4), dw only, ms), 32 images:
#   28x28 32->32: 1.58 / 1.37 / 1.27 / 1.21   14x14 64->64: 1.70 / 1.64 / 1.83 / 1.81
#   7x7 128->128 (at most 32 tiles a chunk): 1.70 / 1.72 / 1.64 / 1.62
WINO_WGRAD_TB = 48
WINO_WGRAD_BLOCK_BYTES = 1 << 20
WINO_WGRAD_MIN_CHUNKS = 2


@lru_cache(maxsize=256)
def wino_wgrad_plan(N: int, OH: int, OW: int, m: int, threads: int, tile_bytes: int = 0) -> WinoPlan:
    ntiles = N * -(-OH // m) * -(-OW // m)
    tb_max = max(1, min(WINO_WGRAD_TB, WINO_WGRAD_BLOCK_BYTES // max(1, tile_bytes)))
    nchunks = min(max(1, ntiles), max(WINO_WGRAD_MIN_CHUNKS, threads))
    per_chunk = max(1, -(-ntiles // nchunks))
    tb = max(1, -(-per_chunk // -(-per_chunk // tb_max)))  # equal blocks of at most tb_max tiles
    nchunks = min(nchunks, max(1, -(-ntiles // tb)))
    return WinoPlan(m, tb, ntiles, nchunks, max(1, min(threads, nchunks)))


# FASTCONV_CONV_ALGO=auto's rule, from interleaved timings (best of 9, 2 threads, float32) on the
# 2-core AMD EPYC (Zen 4, AVX-512) of the development host, effective GFLOP/s (direct FLOP count)
# direct / winograd4 / winograd2, forward and input gradient:
#   N  H  W   C   K    forward             input gradient
#   32 28 28  32  64   116 / 235 / 77      76 / 503 / 366
#   32 14 14  64  64   116 / 591 / 72      116 / 274 / 241
#  128 28 28  32  32   57 / 95 / 66        58 / 125 / 77
#   32  8  8 128 128   269 / 592 / 438     265 / 547 / 418
#   32  7  7  64  64   248 / 398 / 301     244 / 399 / 299
#   32  4  4 128 128   244 / 318 / 312     230 / 289 / 283
#   32 28 28   8  16   103 / 92 / 60       56 / 112 / 70
#   32 28 28  16  32   236 / 418 / 271     120 / 277 / 179
#   32 14 14  32  32   229 / 381 / 319     229 / 402 / 330
# weight gradient (F(4x4) blocks of 24 tiles vs the direct kernel):
#   32 28 28  32  64   90 / 332      32 14 14  64  64   226 / 361     32 7 7 128 128   108 / 176
#    8 56 56  64  64   91 / 155      32 28 28  16  32   200 / 390    128 28 28 32 32    89 / 145
# (the host is shared with other jobs: absolute figures swing by 2x; the ratios decided the rule).
#   16 28 28 128 128   42 / 90 / 71        41 / 84 / 76
#    8 14 14 256 256   58 / 93 / 135       51 / 77 / 136
#    8  7  7 512 512   46 / 17 / 27        33 / 17 / 26
# F(4x4) beat direct and F(2x2) wherever the conv had 16+ input and output channels, down to 4x4
# maps; with 8 channels it lost the forward; at 512 x 512 channels it lost 2.7x (each block of tiles
# streams the whole 36 x C x K transformed weight, 37 MB, from memory).  A table, not a timing at run
# time: deterministic.
WINO_MIN_CHANNELS = 16
WINO_MAX_CHANNEL_PRODUCT = 256 * 256  # on a 32 MiB L3 (set per CPU by size_for_cpu at the end)
WINO_MIN_MAP = 4


#: the weight gradient runs Winograd (auto) from this many output tiles in the batch: each chunk adds
#: fixed work per (C, K) pair (storing and folding its 36 C K sums), which a batch of few tiles does
#: not repay. Measured (1 thread, AVX-512 EPYC, dw only, direct vs F(4x4) ms, since each chunk folds
#: its own sums): 32 x 7x7 (128 tiles) 128->128 6.3 (loaded) / 1.6 and 64->128 1.17 / 0.86;
#: 4 x 14x14 (64 tiles) 64->64 0.32 / 0.24; 2 x 28x28 (98) 32->32 0.21 / 0.11; 8 x 7x7 (32 tiles)
#: 128->128 0.67 / 0.72; 1 x 7x7 (4 tiles) 256->256 1.4 / 15.
WINO_WGRAD_MIN_TILES = 64


def wino_wgrad_pays(N: int, OH: int, OW: int) -> bool:
    """Whether auto runs the weight gradient of an eligible conv with Winograd F(4x4) (see above)."""
    return N * -(-OH // 4) * -(-OW // 4) >= WINO_WGRAD_MIN_TILES


def wino_tile(OH: int, OW: int) -> str:
    """The Winograd tile for an OH x OW output map: F(4x4) down to 4x4 maps (measured above: even
    7x7 maps, 64 computed pixels per 49, ran faster than with F(2x2)), F(2x2) below."""
    return "winograd4" if min(OH, OW) >= WINO_MIN_MAP else "winograd2"


def conv_algo(N: int, OH: int, OW: int, C: int, K: int, itemsize: int) -> str:
    """FASTCONV_CONV_ALGO=auto's choice for an eligible 3x3 conv from C to K channels with an OH x OW
    output: Winograd (wino_tile) in float32 with C, K >= WINO_MIN_CHANNELS on maps of at least
    WINO_MIN_MAP and C * K <= WINO_MAX_CHANNEL_PRODUCT; direct otherwise (float64 serves gradient
    checks: the direct path, exact to rounding)."""
    if (itemsize != 4 or min(C, K) < WINO_MIN_CHANNELS or C * K > WINO_MAX_CHANNEL_PRODUCT
            or min(OH, OW) < WINO_MIN_MAP or N * OH * OW == 0):
        return "direct"
    return wino_tile(OH, OW)


size_for_cpu()  # the CPU-dependent sizes above, for this machine (or _dispatch.set_cpu_info's)
