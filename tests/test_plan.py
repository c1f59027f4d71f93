"""The plan step (fastconv/ops/_plan.py) on its own: tile layout, row segments, the rowk choice,
the narrow-kernel choice, tiles per chunk, thread splits and the int-geometry checks."""
import pytest

from fastconv._kernels import conv as _kc
from fastconv.ops import _plan as P

F32 = 4


def _fwd(OH, OW, k=3, pad=1, dil=1, stride=1):
    return P.forward_plan((OH, OW), (k, k), (stride, stride), (pad, pad), (dil, dil))


def test_constants_come_from_the_c_geometry():
    assert P.MAX_TAPS == _kc.MAX_TAPS == 64
    assert P.RB == _kc.RB == 6
    assert P.NARROW_MAX_KO == _kc.NARROW_MAX_KO == 4


@pytest.mark.parametrize("OW, rowtiles", [(12, True), (6, True), (28, True), (24, True), (7, False),
                                          (23, False), (1, False)])
def test_tile_layout_rows_or_flat(OW, rowtiles):
    t = P.tile_plan(_fwd(5, OW), 2, 3, 64, 64, F32, 1)
    assert t.rowtiles == rowtiles
    if rowtiles:
        assert t.ntiles == 2 * 5 * -(-OW // 6)  # whole rows, a partial tile at each row's end
    else:
        assert t.ntiles == -(-2 * 5 * OW // 6)  # flattened over N*OH*OW
    assert t.path == "tiles"  # 64 channels: no row segments


def test_no_pixels_no_path():
    t = P.tile_plan(_fwd(0, 12), 2, 3, 8, 8, F32, 1)
    assert t.ntiles == 0 and t.path is None


def test_rowseg_for_few_channels_and_enough_rows():
    g = _fwd(28, 28)
    t = P.tile_plan(g, 4, 3, 3, 3, F32, 2)
    assert t.rowseg and t.mergex
    assert t.path == ("rowk" if _kc.rowk_shape(3 * 3, 3) else "rowseg")
    # chunks of whole rows, about 16 per thread
    assert t.tb == 5 * max(1, (4 * 28) // (16 * 2))
    # too few rows for the threads, too many channels, too wide a row, flat tiles: no row segments
    assert not P.tile_plan(_fwd(1, 28), 1, 3, 3, 3, F32, 2).rowseg
    assert not P.tile_plan(g, 4, 3, 17, 17, F32, 2).rowseg
    assert P.tile_plan(g, 4, 3, 16, 16, F32, 2).rowseg
    assert not P.tile_plan(_fwd(2, 1030), 4, 3, 3, 3, F32, 1).rowseg
    assert not P.tile_plan(_fwd(28, 7), 4, 3, 3, 3, F32, 1).rowseg


def test_rowk_needs_merged_consecutive_taps():
    # dilation 2: the column taps are not consecutive input columns, so no merged rows, no rowk
    t = P.tile_plan(_fwd(28, 28, dil=2, pad=2), 4, 3, 3, 3, F32, 1)
    assert t.rowseg and not t.mergex and t.path == "rowseg"
    # grouped input (ICt != Cr): the merged run would cross into another group's channels
    t = P.tile_plan(_fwd(28, 28), 4, 3, 6, 3, F32, 1)
    assert not t.mergex and t.path == "rowseg"


def test_input_gradient_phases_flip_columns_and_merge():
    plans = P.input_grad_plans((28, 28), (3, 3), (1, 1), (1, 1), (1, 1))
    assert len(plans) == 1 and P.flips_columns((1, 1), (1, 1))
    assert P.tile_plan(plans[0], 2, 3, 4, 4, F32, 1).mergex
    plans = P.input_grad_plans((28, 28), (3, 3), (2, 2), (1, 1), (1, 1))
    assert len(plans) == 4 and not P.flips_columns((2, 2), (1, 1))


@pytest.mark.parametrize("Cr, itemsize, tb", [(64, 4, 8), (64, 8, 4), (512, 4, 1), (128, 4, 4)])
def test_tiles_per_chunk_keep_the_input_in_l2(Cr, itemsize, tb):
    # patch = taps_y * max(taps_x * RB, (RB - 1) * ax + span) * Cr * itemsize; tb = 128 KiB // patch
    # on a 1 MiB L2 (sized for it here: on a 512 KiB L2, as on Zen 3, the budget is 64 KiB)
    try:
        P.size_for_cpu(ZEN5)
        t = P.tile_plan(_fwd(14, 14), 8, 3, Cr, Cr, itemsize, 2)
    finally:
        P.size_for_cpu()
    assert t.tb == tb == max(1, min(8, 131072 // (3 * 18 * Cr * itemsize)))


@pytest.mark.parametrize("Cr, Ko, vlen, narrow", [
    (16, 4, 8, True),     # AVX2 float32: 8 channels per vector
    (8, 4, 8, True),
    (7, 4, 8, False),     # less than one vector of reduction channels
    (16, 5, 8, True),     # 5-15 outputs: passes of 4 still beat a tile leaving lanes idle
    (16, 15, 8, True),
    (16, 16, 8, False),   # a full output vector or more: the output-vectorised tile
    (16, 6, 16, True),    # LeNet c3's input gradient (16 -> 6) on AVX-512
    (32, 16, 16, False),
    (4, 5, 4, False),     # generic float32: only up to 4 outputs
    (8, 1, 16, False),    # AVX-512 float32 needs 16
    (16, 1, 16, True),
    (4, 2, 4, True),      # generic float32
    (2, 2, 2, True),      # generic float64
])
def test_narrow_choice_per_vector_length(Cr, Ko, vlen, narrow):
    assert P.use_narrow(Cr, Ko, vlen) == narrow


@pytest.mark.parametrize("rows, threads, nchunks, used", [(100, 1, 4, 1), (100, 2, 4, 2), (100, 8, 8, 8),
                                                          (3, 2, 3, 2), (1, 4, 1, 1)])
def test_weight_gradient_thread_split(rows, threads, nchunks, used):
    w = P.wgrad_plan(rows, 28, 64, 64, 3, 1, 1, F32, threads)
    assert (w.nchunks, w.threads) == (nchunks, used)
    assert 1 <= w.rblk <= 64


def test_norm_row_split():
    s = P.norm_plan(9000, 17, True, 2)  # 153000 elements, 32768 per reduction chunk
    assert (s.nchunks, s.threads, s.dynamic) == (4, 2, True)
    assert P.norm_plan(9000, 17, False, 2).nchunks == 2
    assert P.norm_plan(10**7, 64, True, 2).nchunks == P.NORM_MAX_CHUNKS
    assert P.norm_plan(3, 10**6, True, 2).nchunks == 3  # at most one chunk per row
    assert P.norm_plan(5, 3, False, 2) == P.RowSplit(5, 1, 1, True)
    # the chunk count depends on the shape only (bit-identical sums for any thread count)
    assert P.norm_plan(9000, 17, True, 1).nchunks == P.norm_plan(9000, 17, True, 7).nchunks


@pytest.mark.parametrize("units, nchunks", [(10, 3), (7, 7), (2**33 + 5, 64)])
def test_row_split_bounds_tile_the_units(units, nchunks):
    s = P.RowSplit(units, nchunks, 2, True)
    bounds = [s.bounds(j) for j in range(nchunks)]
    assert bounds[0][0] == 0 and bounds[-1][1] == units
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(lo < hi for lo, hi in bounds)
    assert P.static_split(3, 8) == P.RowSplit(3, 3, 3, False)


def test_int_geometry_checks():
    P.check_int_geometry("op", [("input height", 2**30 - 1), ("batch size", 2**31 - 1)])
    with pytest.raises(ValueError, match=r"input height must be below 2\*\*30.*input height=1073741824"):
        P.check_int_geometry("op", [("input height", 2**30)])
    with pytest.raises(ValueError, match=r"batch size must be below 2\*\*31"):
        P.check_int_geometry("op", [("batch size", 2**31)], " (x.shape=...)")


def test_depthwise_and_pool_variants():
    assert P.depthwise_variant(3, 1, 4) == "scalar"
    assert P.depthwise_variant(4, 1, 4) == "vector"
    assert P.depthwise_variant(2, 1, 8) == "vector"
    assert P.depthwise_variant(8, 2, 4) == "multiplier"
    assert P.pool_backward_variant((2, 2), (2, 2), False) == "fused"
    assert P.pool_backward_variant((3, 3), (2, 2), False) == "gather"
    assert P.pool_backward_variant((2, 2), (2, 2), True) == "argmax"


# ---- depthwise, pooling and the narrow conv: the splits the wrappers run ----

def _dw_geo(N=2, H=9, W=10, C=8, M=1, OH=9, OW=10, k=3, s=1, p=1, d=1):
    return (N, H, W, C, M, OH, OW, k, k, s, s, p, p, d, d)


def test_depthwise_forward_plan():
    p = P.depthwise_plan(_dw_geo(), 4, False, 2)
    assert p.out_shape == (2, 9, 10, 8) and p.taps == 9 and p.variant == "vector"
    assert p.block_rows == 0
    # output rows (n, oh), one contiguous range per thread, static
    assert p.split == P.RowSplit(18, 2, 2, False)
    one_row = _dw_geo(N=1, OH=1, H=1, k=1, p=0)
    assert P.depthwise_plan(one_row, 4, False, 4).split == P.RowSplit(1, 1, 1, False)
    assert P.depthwise_plan(_dw_geo(C=3, M=2), 4, False, 1).variant == "multiplier"


def test_depthwise_backward_blocks():
    # a dy row of 10 px * 8 ch * 4 B = 320 B: 96 KiB holds 307 rows, so the whole map is one block
    p = P.depthwise_plan(_dw_geo(), 4, True, 2)
    assert p.block_rows == 9 and p.split == P.RowSplit(2, 2, 2, False)
    # 512 px * 64 ch * 8 B = 256 KiB rows: one row per block
    p = P.depthwise_plan(_dw_geo(N=3, H=40, W=512, C=64, OH=40, OW=512), 8, True, 2)
    assert p.block_rows == 1 and p.split.units == 3 * 40
    # 96 KiB / (100 * 16 * 4 B) = 15 rows per block: ceil(40 / 15) = 3 blocks per image
    p = P.depthwise_plan(_dw_geo(N=5, H=40, W=100, C=16, OH=40, OW=100), 4, True, 4)
    assert p.block_rows == 15 and p.split == P.RowSplit(15, 4, 4, False)
    # the chunks are the threads (dw, db partials per chunk): one thread, one chunk
    assert P.depthwise_plan(_dw_geo(N=5, H=40, W=100, C=16, OH=40, OW=100), 4, True, 1).split.nchunks == 1
    # no pixels: nothing to split (the wrapper zero-fills dw, db)
    assert P.depthwise_plan(_dw_geo(N=0), 4, True, 2).split.units == 0


def _pool_geo(N=2, H=9, W=10, C=8, OH=5, OW=5, k=2, s=2, p=0, inc=0):
    return (N, H, W, C, OH, OW, k, k, s, s, p, p, inc, 1, 1, H + p, W + p)


def test_pool_plans():
    f = P.pool_plan(_pool_geo(), False, False, 2)
    assert f.variant == "window" and f.out_shape == (2, 5, 5, 8) and f.split == P.RowSplit(10, 2, 2, False)
    # backward units: output rows for fused (non-overlapping) windows, dx rows otherwise
    b = P.pool_plan(_pool_geo(), True, False, 2)
    assert b.variant == "fused" and b.split.units == 2 * 5
    b = P.pool_plan(_pool_geo(k=3, p=1), True, False, 2)
    assert b.variant == "gather" and b.split.units == 2 * 9
    b = P.pool_plan(_pool_geo(), True, True, 2)
    assert b.variant == "argmax" and b.split.units == 2 * 9
    assert P.pool_plan(_pool_geo(N=1, OH=1, H=2), False, False, 8).split.threads == 1
    g = P.global_pool_plan((3, 7, 5, 20), False, 4, 2)
    assert g.geometry == (3, 7, 5, 20, 1, 1, 7, 5, 1, 1, 0, 0, 0, 1, 1, 7, 5) and g.variant == "global"
    assert g.split == P.RowSplit(3, 2, 2, False)
    # channel sums (C + 16 in the input type and in float64): not the window gather lists
    assert g.scratch_bytes == (20 + 16) * (4 + 8) + 128
    assert P.global_pool_plan((3, 7, 5, 20), True, 4, 2).split.units == 3 * 7


def test_pool_backward_units_agree_with_the_kernel():
    from fastconv._kernels import pool as _kp
    import numpy as np
    for k, s, pad, saved in [(2, 2, 0, False), (3, 2, 1, False), (2, 2, 0, True), (3, 3, 1, False)]:
        H = W = 9
        O = (H + 2 * pad - k) // s + 1
        geo = _pool_geo(N=2, H=H, W=W, C=4, OH=O, OW=O, k=k, s=s, p=pad)
        plan = P.pool_plan(geo, True, saved, 2)
        dy = np.ones((2, O, O, 4), np.float32)
        x = np.zeros((2, H, W, 4), np.float32)
        am = np.zeros((2, O, O, 4), np.int32) if saved else None
        _kp.max_backward(x, dy, am, np.empty_like(x), geo, plan.split.args(), 0)  # refuses other units
        with pytest.raises(ValueError, match="split"):
            other = P.static_split(plan.split.units + 1, 2).args()
            _kp.max_backward(x, dy, am, np.empty_like(x), geo, other, 0)


@pytest.mark.parametrize("N, OH, OW, threads", [(2, 5, 200, 2), (1, 1, 1, 2), (4, 33, 96, 1), (8, 64, 97, 2),
                                                (3, 7, 1000, 16), (0, 5, 5, 2)])
def test_narrow_plan_mirrors_fc_nk_count(N, OH, OW, threads):
    s = P.narrow_plan(N, OH, OW, threads)
    assert P.NARROW_BW == _kc.NARROW_BW == 96
    assert s.units == _kc.narrow_units(N, OH, OW)
    assert s.dynamic
    if s.units:
        # about 8 chunks per thread (fewer when there are fewer units), each holding at least one unit
        per = max(1, s.units // (8 * threads))
        assert s.nchunks == -(-s.units // per) and s.nchunks <= s.units
        assert s.threads == min(threads, s.nchunks)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_narrow_conv_runs_the_plans_split(threads):
    """narrow_conv writes the same with narrow_plan's split (what ops/conv.py passes) as with one unit per chunk,
    and refuses a split of other units."""
    import numpy as np
    from fastconv.ops._validate import aligned_empty
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 7, 200, 16)).astype(np.float32)
    w = rng.standard_normal((3, 3, 16, 2)).astype(np.float32)
    g = _fwd(7, 200)
    packing = P.forward_packing(3, 3, 16, 2, 1)
    wn = aligned_empty((_kc.narrow_weights_size(0, np.float32, 3, 3, 1, 16, 2),), np.float32)
    _kc.pack_narrow(w.reshape(-1), 3, 3, 1, *packing, wn, 0)
    outs = []
    plan = P.narrow_plan(2, 7, 200, threads).args()
    units = plan[0]
    for split in ((units, units, threads, True), plan):  # one unit per chunk, and the plan's cut
        y = np.full((2, 7, 200, 2), np.nan, np.float32)
        args = (x, wn, None, y, g.grid, g.taps_y, g.taps_x, False, 3, 3, 1, 16, 2, False, 0)
        _kc.narrow_conv(*args, split)
        outs.append(y)
    assert np.isfinite(outs[1]).all()
    np.testing.assert_array_equal(outs[0], outs[1])
    with pytest.raises(ValueError, match="split"):
        _kc.narrow_conv(*args, P.narrow_plan(2, 7, 300, threads).args())


# ---- sizes per CPU: the caches read at run time (fastconv/_dispatch.py cpu_info, _plan.size_for_cpu) ----

from fastconv import _dispatch  # this section's own import

ZEN1 = _dispatch.CpuInfo("AuthenticAMD", 23, 1, l1d=32 << 10, l2=512 << 10, l3=8 << 20)
ZEN3 = _dispatch.CpuInfo("AuthenticAMD", 25, 33, l1d=32 << 10, l2=512 << 10, l3=32 << 20)
SKYLAKE = _dispatch.CpuInfo("GenuineIntel", 6, 94, l1d=32 << 10, l2=256 << 10, l3=8 << 20)
ZEN5 = _dispatch.CpuInfo("AuthenticAMD", 26, 2, l1d=48 << 10, l2=1 << 20, l3=32 << 20)
XEON = _dispatch.CpuInfo("GenuineIntel", 6, 143, l1d=48 << 10, l2=2 << 20, l3=105 << 20)


@pytest.mark.parametrize("cpu, tile, block, product", [
    (ZEN5, 128 << 10, 192 << 10, 256 * 256),   # the development host: the measured constants
    (ZEN1, 64 << 10, 96 << 10, (8 << 20) // 288),  # half the L2, an 8 MiB L3 per core complex
    (ZEN3, 64 << 10, 96 << 10, 256 * 256),
    (SKYLAKE, 32 << 10, 96 << 10, (8 << 20) // 288),
    (_dispatch.CpuInfo(l2=128 << 10, l3=2 << 20), 32 << 10, 96 << 10, 128 * 128),  # floors
    (XEON, 128 << 10, 192 << 10, 256 * 256),   # larger caches: capped at what was measured
])
def test_sizes_follow_the_caches(cpu, tile, block, product):
    assert P.tile_l2_bytes(cpu) == tile
    assert P.wino_block_bytes(cpu) == block
    assert P.wino_max_channel_product(cpu) == product


def test_size_for_cpu_changes_the_plans_and_back():
    g = _fwd(28, 28)
    try:
        P.size_for_cpu(SKYLAKE)
        assert P.TILE_L2_BYTES == 32 << 10
        # 3 rows x 18 columns x 256 channels = 55 KiB per tile: one tile per chunk on a 256 KiB L2
        assert P.tile_plan(g, 4, 3, 256, 256, F32, 1).tb == 1
        assert P.conv_algo(8, 14, 14, 192, 192, F32) == "direct"   # 36 * 192^2 floats > half of 8 MiB
        P.size_for_cpu(ZEN5)
        assert P.tile_plan(g, 4, 3, 256, 256, F32, 1).tb == 2
        assert P.conv_algo(8, 14, 14, 192, 192, F32) == "winograd4"
    finally:
        P.size_for_cpu()
    assert P.TILE_L2_BYTES == P.tile_l2_bytes(_dispatch.cpu_info())


def _fake_root(tmp_path, cpuinfo, caches):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(cpuinfo)
    for i, (level, kind, size) in enumerate(caches):
        d = tmp_path / "sys" / "devices" / "system" / "cpu" / "cpu0" / "cache" / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return str(tmp_path)


def test_read_cpu_info_from_proc_and_sysfs(tmp_path):
    root = _fake_root(tmp_path, "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 1\n\n"
                                "processor\t: 1\nvendor_id\t: Other\n",
                      [(1, "Data", "32K"), (1, "Instruction", "64K"), (2, "Unified", "512K"), (3, "Unified", "8192K")])
    info = _dispatch.read_cpu_info(root)
    assert (info.vendor, info.family, info.model) == ("AuthenticAMD", 23, 1)
    assert (info.l1d, info.l2, info.l3) == (32 << 10, 512 << 10, 8 << 20)
    assert P.tile_l2_bytes(info) == P.tile_l2_bytes(ZEN1)


def test_read_cpu_info_falls_back_to_the_defaults(tmp_path):
    info = _dispatch.read_cpu_info(str(tmp_path))  # no proc, no sys
    d = _dispatch.DEFAULT_CPU
    assert (info.vendor, info.l1d, info.l2, info.l3) == ("", d.l1d, d.l2, d.l3)
    (tmp_path / "x").mkdir()
    root = _fake_root(tmp_path / "x", "", [(2, "Unified", "lots")])
    assert _dispatch.read_cpu_info(root).l2 == d.l2   # an unreadable size keeps the default


def test_set_cpu_info_overrides_and_checks():
    try:
        assert _dispatch.set_cpu_info(ZEN1) is ZEN1
        assert _dispatch.cpu_info() is ZEN1
        with pytest.raises(TypeError, match="CpuInfo"):
            _dispatch.set_cpu_info({"l2": 1})
    finally:
        _dispatch.set_cpu_info(None)
    assert _dispatch.cpu_info() is not ZEN1
    with pytest.raises(ValueError, match="l2 must be a positive"):
        _dispatch.CpuInfo(l2=0)
