#!/usr/bin/env bash
# Build the kernels with AddressSanitizer + UndefinedBehaviorSanitizer and run tests against them.
#
#   scripts/sanitize.sh                     # kernel + large-shape + layer/model tests; every report fatal
#   scripts/sanitize.sh --quick             # kernel + large-shape tests only: the bounded pass CI runs
#   scripts/sanitize.sh --all               # the whole test suite
#   scripts/sanitize.sh --keep-going        # UBSan reports don't stop the run; all are listed at the end
#   scripts/sanitize.sh tests/test_pool.py -k max   # your own selection / pytest options
#
# Options (before any pytest arguments): --quick, --all, --keep-going, --no-build (reuse the last build).
# Anything else goes to pytest; test paths are relative to the repository.
# PYTHON=... chooses the interpreter (default: python); it needs Cython, setuptools>=77, numpy, pytest.
#
# How: setup.py with FASTCONV_SANITIZE=1 compiles into build/sanitize/ (the in-place build in
# fastconv/_kernels is not touched); the fastconv/ Python tree plus those .so files are staged in
# build/sanitize/site, and pytest runs from there with the sanitizer runtime LD_PRELOADed (CPython
# itself is not instrumented, so libasan has to be loaded first).  scripts/sanitize_plugin.py makes
# pytest refuse to start unless that staged, instrumented copy is what got imported.
# A shell script rather than Python because LD_PRELOAD has to be set before the interpreter starts.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
quick=0 all=0 keep_going=0 build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --all) all=1 ;;
        --keep-going) keep_going=1 ;;
        --no-build) build=0 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) break ;;
    esac
    shift
done

out=$repo/build/sanitize
site=$out/site
log=$out/pytest.log
cd "$repo"

# ---- build -------------------------------------------------------------------------------------
if [ $build = 1 ]; then
    echo "== sanitizer build (FASTCONV_SANITIZE=1) into $out"
    start=$SECONDS
    mkdir -p "$out"
    if ! FASTCONV_SANITIZE=1 "$PYTHON" setup.py -q build_ext -j "$(nproc 2>/dev/null || echo 2)" --build-lib "$out/lib" --build-temp "$out/temp" \
            >"$out/build.log" 2>&1; then
        tail -n 40 "$out/build.log" >&2
        echo "sanitizer build failed (full log: $out/build.log)" >&2
        exit 2
    fi
    echo "   built in $((SECONDS - start)) s (compiler output: $out/build.log)"
fi
ls "$out"/lib/fastconv/_kernels/*.so >/dev/null 2>&1 || { echo "no sanitizer build in $out/lib (drop --no-build)" >&2; exit 2; }

# ---- stage: the Python package + the instrumented .so files, nothing else ------------------------
rm -rf "$site"
mkdir -p "$site"
cp -r fastconv "$site/fastconv"
find "$site/fastconv" \( -name '*.so' -o -name '*.pyd' -o -name __pycache__ \) -prune -exec rm -rf {} +
cp "$out"/lib/fastconv/_kernels/*.so "$site/fastconv/_kernels/"
cp scripts/sanitize_plugin.py "$site/"

# ---- runtime -----------------------------------------------------------------------------------
cc=$("$PYTHON" -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "cc").split()[0])')
preload=""
for lib in libasan.so libubsan.so; do
    path=$("$cc" -print-file-name=$lib)
    [ -e "$path" ] || { echo "$cc has no $lib (install the sanitizer runtime, e.g. libasan8 / libubsan1)" >&2; exit 2; }
    preload="$preload${preload:+:}$(readlink -f "$path")"
done
# detect_leaks=0: CPython keeps objects alive until exit by design.
# allocator_may_return_null=1: an impossible allocation becomes NumPy's MemoryError, as without ASan.
# abort_on_error=1: SIGABRT, so pytest's faulthandler prints the Python stack (which test) after the report.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:detect_stack_use_after_return=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
halt=1
[ $keep_going = 1 ] && halt=0
export UBSAN_OPTIONS="halt_on_error=$halt:abort_on_error=1:print_stacktrace=1:report_error_type=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 FASTCONV_SANITIZE_SITE="$site"
export PYTHONPATH="$site"

# ---- selection ---------------------------------------------------------------------------------
large=$(ls tests/test_large*.py 2>/dev/null || true)
args=() selected=0
for a in "$@"; do
    if [ "${a#-}" = "$a" ]; then   # a test path (relative to the repo, or absolute): run from $site
        if [ -e "$repo/${a%%::*}" ]; then a=$repo/$a selected=1; elif [ -e "${a%%::*}" ]; then selected=1; fi
    fi
    args+=("$a")
done
# The kernel tests: the four kernel families op by op, plus the large-shape tests (tests/test_large*.py
# and anything marked `large` in those files).  The default adds the layer and model tests, which
# drive the same kernels through real layers, fused BatchNorm+ReLU, models and training steps, and
# the wide-range property tests (several minutes under ASan, so not in --quick).
# (tests/test_reference.py is NumPy only; CLI, examples, datasets and plotting are left to --all.)
kernel_tests="tests/test_conv.py tests/test_conv_wgrad.py tests/test_winograd.py tests/test_elementwise.py tests/test_depthwise.py tests/test_pool.py tests/test_norm.py $large"
kernel_tests="$kernel_tests tests/test_conv_grouped.py"  # group-pair tile (src/conv_grouped_impl.h)
kernel_tests="$kernel_tests tests/test_pool_argmax.py"  # saved argmax, max pooling's gather backward (src/pool_impl.h)
kernel_tests="$kernel_tests tests/test_conv_rows.py"  # few-channel rows in place or copied (fc_rowk_rows)
kernel_tests="$kernel_tests tests/test_depthwise_pad.py"  # zero-padded row cache (src/depthwise_impl.h)
kernel_tests="$kernel_tests tests/test_optimizers_compiled.py tests/test_engine_memory.py"  # compiled optimizer pass (src/optim_impl.h), buffer cache (src/buffers_impl.h)
kernel_tests="$kernel_tests tests/test_flat_params.py"  # one-segment optimizer pass over flat weights, optim.address (src/optim.pyx)
kernel_tests="$kernel_tests tests/test_pool_argmax.py"  # max pooling's saved argmax and the row scatter backward (src/pool_impl.h)
kernel_tests="$kernel_tests tests/test_concat_copyfree.py"  # conv stores at an output pixel stride (copy-free concatenation)
kernel_tests="$kernel_tests tests/test_winograd_threads.py"  # Winograd weight gradient chunk split and schedule (src/winograd.pyx)
kernel_tests="$kernel_tests tests/test_predict_residual.py"  # residual sum + activation in one pass (fc_ew_add_span, src/elementwise_impl.h)
kernel_tests="$kernel_tests tests/test_norm_mask.py"  # BN backward masks from x: fa/fb in fc_bn_dsums_rows / fc_bn_dx_rows (src/norm_impl.h)
kernel_tests="$kernel_tests tests/test_norm_sums.py"  # compiled sums fc_add_act, add_rows (src/norm_impl.h, src/norm.pyx)
layer_tests="tests/test_property_wide.py tests/test_layers_base.py tests/test_layers_conv.py tests/test_layers_core.py
    tests/test_layers_normalization.py tests/test_layers_pooling.py tests/test_layers_reshaping.py
    tests/test_layers_blocks.py tests/test_layers_torch.py tests/test_activations.py tests/test_initializers.py
    tests/test_regularizers.py tests/test_engine_functional.py tests/test_engine_sequential.py tests/test_models.py
    tests/test_engine_trainer.py"
if [ $selected = 0 ]; then
    if [ $all = 1 ]; then
        files="tests"
    elif [ $quick = 1 ]; then
        files="$kernel_tests"
    else
        files="$kernel_tests $layer_tests"
    fi
    for f in $files; do
        if [ -e "$f" ]; then args+=("$repo/$f"); fi
    done
fi

# ---- run ---------------------------------------------------------------------------------------
echo "== pytest under ASan+UBSan (LD_PRELOAD=$preload)"
echo "   ASAN_OPTIONS=$ASAN_OPTIONS"
echo "   UBSAN_OPTIONS=$UBSAN_OPTIONS"
cd "$site"   # -m pytest puts the cwd first on sys.path: the staged copy, never the source tree
start=$SECONDS
set +e
LD_PRELOAD=$preload "$PYTHON" -m pytest -c "$repo/pyproject.toml" --rootdir "$repo" -p sanitize_plugin \
    -p no:cacheprovider --capture=sys -v -v "${args[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo "== pytest exit status $status after $((SECONDS - start)) s (log: $log)"

reports=$(grep -E "runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer" "$log" | sort | uniq -c || true)
if [ -n "$reports" ]; then
    echo "== sanitizer reports:"
    echo "$reports"
    [ $status = 0 ] && status=1
else
    echo "== no sanitizer reports"
fi
exit $status
