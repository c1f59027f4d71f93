"""The execution plan: a model's layer calls in topological order over integer tensor ids, run
forward and backward, and the fusions it applies while running.

Design notes
------------
* One engine for every model kind. A model hands the trainer an
  :class:`ExecutionPlan`: nodes in topological order, each a :class:`PlanNode`
  ``(layer, input tensor ids, output tensor id)``. ``Sequential`` is the chain
  ``0 -> layer0 -> 1 -> layer1 -> 2 ...``; a graph ``Model(inputs, outputs)``
  compiles its symbolic nodes into a DAG plan and reuses everything here
  unchanged (multi-input layers take a list and return a list of input
  gradients).
* Backward runs the nodes in reverse, sums a tensor's gradient over its
  consumers, drops each gradient as soon as it has been used, and skips every
  node that has no trainable weight upstream (frozen leading layers cost no
  backward at all). ``need_input_grad`` is set per step from the *current*
  ``trainable`` flags, so freezing takes effect without recompiling.
* Gradient sums allocate at most once per tensor: the first array the pass owns (a sum it
  allocated, or the dx of a layer declaring ``fresh_input_grad``, BatchNormalization) takes the
  others in place, on the norm family's compiled add (every thread; NumPy's add runs on one).
  Concatenate's input gradients are views of its dy: added as they are, and copied (one run of
  channels per pixel) only where a slice alone reaches a layer's backward.
* Fusion is data: each layer declares what it can fuse (``fastconv.layers.base``:
  ``fusable_epilogues``, ``final_activation``, ``epilogue_name``), the plan
  decides from those declarations alone (it imports no layer class) and passes
  its decision into the call, ``layer.forward(x, training, epilogue=name)``;
  no attribute of a layer is set around a call. A fusion map is
  ``{node index: mode}``, mode "skip" (the node passes its input through) or
  the epilogue name the node's layer applies in place of its own activation.
* Fused softmax + cross-entropy: when the loss is a cross-entropy and an output
  node ends in a softmax, the training forward produces logits instead
  (a node whose layer *is* the softmax, ``epilogue_name == "softmax"``, is
  skipped; a layer whose ``final_activation`` is softmax runs with
  ``epilogue="linear"``), the loss takes ``(loss, p - onehot)`` from the
  logits, and backward starts from there. ``predict`` always returns
  probabilities. Only an output that nothing else reads is fused (another node
  would need probabilities).
* Fused activation layers: a node whose layer is an activation (its
  ``epilogue_name``) right after a layer with a linear ``final_activation``
  that lists that name in its ``fusable_epilogues`` (BatchNormalization: relu,
  relu6; Conv2D, SeparableConv2D, Dense: relu, in the conv kernel's epilogue;
  DepthwiseConv2D, Conv2DTranspose, Add, Concatenate: relu, relu6, in place on
  their fresh output) passes its input through, and the layer before applies
  the activation.
* Moved activations: a layer ending in an activation (``final_activation``, e.g. Conv2D's relu)
  whose output feeds only a layer declaring that it commutes with it (``commuting_epilogues``:
  MaxPooling2D, relu and relu6) runs with ``epilogue="linear"`` and the next layer applies it
  (``epilogue=name``) to its smaller output, forward and gradient (:meth:`activation_fusion`).
* Folded BatchNormalization (inference only, :meth:`ExecutionPlan.inference_fusion`):
  a layer that declares ``accepts_affine`` (Conv2D, SeparableConv2D, Dense,
  DepthwiseConv2D, an ungrouped Conv2DTranspose) with a
  linear ``final_activation``, whose output feeds only a layer with an
  ``inference_affine()`` (BatchNormalization), runs with that map folded into
  its weights for the call (mode :class:`Fold`, ``forward(x, affine=(a, b))``),
  and the BatchNormalization node passes its input through. The affine map is
  read from the current weights at each call (no cache to invalidate: the
  fold costs one multiply over the kernel, ~20 us for 3x3x32x64, next to a
  batch's convolution). An activation after the BatchNormalization (its fused
  relu, or an activation layer the first layer can apply) becomes the first
  layer's epilogue. ``predict`` and ``evaluate`` use it; training never does.
  A block (``fastconv.layers.blocks``) is one node here: it applies the same folds
  to the layers inside it in its own inference forward.
* Copy-free concatenation (:meth:`ExecutionPlan.concat_placements`):
  a node whose layer declares ``accepts_out`` (Conv2D), whose output feeds only a channel-axis
  Concatenate (``channel_slices``) with no epilogue of its own, once, and is no model output, writes
  its output straight into its channel slice of the concatenation's output, which the plan
  allocates when the first such producer runs; the Concatenate (``forward(xs, out=buffer)``) then
  copies only its other inputs. A producer's cached output (a ReLU's mask) is then a view of that
  buffer, which nothing writes again. The backward is unchanged (each input's gradient its slice of
  dy, a view). ``FASTCONV_COPYFREE_CONCAT=1`` turns it on, ``=0`` off (the copying path);
  ``=full`` places whole concatenations only (every input placed, nothing copied); unset,
  ``COPYFREE_CONCAT_DEFAULT`` decides (off: it did not pay where measured), and for inference
  forwards ``COPYFREE_CONCAT_INFERENCE_FULL`` may choose "full" (off: no gain once predict runs
  large batches in cache-sized parts).
* A plan node whose layer runs at several nodes of a graph holds a per-use
  proxy (``fastconv.engine.shared``); the plan sees through it with
  ``wrapped_layer`` only to reset the grads of a layer no gradient reached.

Why ``PlanNode`` and not ``Node``: the symbolic graph node of a layer call
(``fastconv.layers._symbolic.Node``) keeps Keras's name; this one is a step of
the compiled plan, over tensor ids rather than symbolic tensors.
"""

from __future__ import annotations

import os

import numpy as np

from fastconv.ops import norm as _norm_ops
from fastconv.ops._validate import aligned_empty

__all__ = ["ExecutionPlan", "Fold", "PlanNode"]


#: Copy-free concatenation when ``FASTCONV_COPYFREE_CONCAT`` is unset. Off: on the loaded 2-core
#: test machine (load ~13) it measured no gain above the noise, training 0.965x (inception_small) and
#: 0.98x (densenet_small) of the copying path (median of 13 interleaved rounds), predict unresolved;
#: measured again (1 thread, thread_time, on / off in alternating processes, load 3-10): training
#: densenet_small 0.965x (9 rounds, 0.81-1.19), inception_small 0.938x (7 rounds, 0.74-1.04);
#: strided stores split 64-byte vectors across cache lines where a branch's own output would not.
COPYFREE_CONCAT_DEFAULT = False


#: "full" placement (``FASTCONV_COPYFREE_CONCAT=full``): the producers of a concatenation are placed
#: only when every one of its inputs can be (the concatenation then copies nothing). With True,
#: inference forwards use it when the variable is unset. False: predict of inception_small (1 thread,
#: loaded host, interleaved rounds) took 0.83x the time of the copying path in one forward of 256,
#: but 1.02x in the parts of 64 rows predict now runs it in (INFERENCE_SPLIT_BYTES: the copies are
#: then in cache); placing only some inputs (densenet_small's new 8 channels) 1.04x the time.
COPYFREE_CONCAT_INFERENCE_FULL = False


def copyfree_concat_enabled(inference=False):
    """``FASTCONV_COPYFREE_CONCAT=1`` on, ``=0`` off, ``=full`` whole concatenations only ("full");
    unset: COPYFREE_CONCAT_DEFAULT, or "full" for an inference forward when
    COPYFREE_CONCAT_INFERENCE_FULL. Read at each forward: A/B in one process."""
    env = os.environ.get("FASTCONV_COPYFREE_CONCAT", "").strip()
    if env == "":
        if inference and COPYFREE_CONCAT_INFERENCE_FULL and not COPYFREE_CONCAT_DEFAULT:
            return "full"
        return COPYFREE_CONCAT_DEFAULT
    if env.lower() == "full":
        return "full"
    return env != "0"


def _itemsize(dtype):
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return 4


def _concat_buffer(shape, dtype):
    """The output of a copy-free concatenation (tests fill it with NaN to see every channel written)."""
    return aligned_empty(shape, dtype)


#: An inference batch whose largest activation (a node's output) would pass INFERENCE_SPLIT_BYTES runs
#: in sub-batches whose largest activation stays within INFERENCE_TARGET_BYTES (a power of two of
#: rows, at least INFERENCE_MIN_ROWS), which bounds predict's memory for very large batches. The
#: threshold was 20 MiB (parts of 8 MiB, to keep memory-bound passes in L3): on the loaded host that
#: split measured 1.1-1.9x faster, but it measured the page faults of fresh activations, which the
#: buffers parked between calls now avoid (fastconv.engine.trainer). On the quiet machine, predict of
#: 256 on 2 threads in one forward against parts of 64 rows (11 interleaved rounds): separable-cnn,
#: densenet_small, inception_small, efficientnet_small 0.84 / 0.88 / 0.79 / 0.82 the time, cifar-cnn 1.06.
INFERENCE_SPLIT_BYTES = 256 << 20
INFERENCE_TARGET_BYTES = 64 << 20
INFERENCE_MIN_ROWS = 32


def _contiguous(a):
    """A C-contiguous copy of ``a``; a channel slice of a C-contiguous NHWC array is copied as one
    run of ``a.shape[-1]`` elements per pixel (NumPy's own copy would loop over the channels),
    float32/float64 by the compiled row copy on every thread."""
    if a.ndim >= 2 and a.shape[-1] and a.strides[-1] == a.itemsize:
        out = aligned_empty(a.shape, a.dtype)
        if _norm_ops._copy_into(out, a):  # float32/64: the rows split over the threads
            return out
        try:
            src = a.view(np.dtype((np.void, a.shape[-1] * a.itemsize)))
        except ValueError:
            return np.ascontiguousarray(a)
        out.view(src.dtype)[...] = src
        return out
    return np.ascontiguousarray(a)


def _add_grad(grads, owned, t, g, g_owned):
    """grads[t] += g without a new array where one of the two is the pass's own (``owned``)."""
    prev = grads.get(t)
    if prev is None:
        grads[t] = g
        if g_owned:
            owned.add(id(g))
        return
    if type(prev) is np.ndarray and type(g) is np.ndarray and prev.shape == g.shape and prev.dtype == g.dtype:
        # (the compiled sums run on every thread; NumPy's where they do not apply)
        if id(prev) in owned:
            if not _norm_ops._sum_into(prev, g):
                np.add(prev, g, out=prev)
            return
        if g_owned and g.flags.c_contiguous and g.flags.writeable:
            if not _norm_ops._sum_into(g, prev):
                np.add(g, prev, out=g)
            owned.add(id(g))
            grads[t] = g
            return
        s = _norm_ops._sum(prev, g)
        if s is None:
            s = np.add(prev, g)
        owned.add(id(s))
        grads[t] = s
        return
    grads[t] = prev + g


class Fold:
    """Fusion mode of a node that folds the affine map of ``source`` (a BatchNormalization after
    it) into its weights for an inference call, then applies ``epilogue`` (None: none)."""

    __slots__ = ("epilogue", "source")

    def __init__(self, source, epilogue=None):
        self.source = source
        self.epilogue = epilogue

    def __repr__(self):
        return f"Fold({getattr(self.source, 'name', self.source)!r}, epilogue={self.epilogue!r})"


class PlanNode:
    """One layer call of a plan: ``tensors[output] = layer(tensors[inputs])``."""

    __slots__ = ("inputs", "layer", "output")

    def __init__(self, layer, inputs, output):
        self.layer = layer
        self.inputs = tuple(inputs)
        self.output = int(output)

    def __repr__(self):
        return f"PlanNode({self.layer.name}, inputs={self.inputs}, output={self.output})"


# The declarations are read with getattr: a plan entry may be a shared layer's per-use proxy
# (fastconv.engine.shared), which declares nothing and so is never fused.
def _fusable(layer):
    return getattr(layer, "fusable_epilogues", ())


def _softmax_mode(layer):
    """How the softmax at the end of ``layer`` can be folded into the loss: "skip", "linear" or None.

    "skip": the layer *is* the softmax (``epilogue_name == "softmax"``), so the training forward
    stops before it. "linear": the layer applies a softmax last (``final_activation``) and can
    leave it out (``"linear"`` in its ``fusable_epilogues``), so it runs with ``epilogue="linear"``.
    """
    if getattr(layer, "epilogue_name", None) == "softmax":
        return "skip"
    if getattr(layer, "final_activation", None) == "softmax" and "linear" in _fusable(layer):
        return "linear"
    return None


def _fusion_map(fusion):
    """``{node index: mode}`` from None, one ``(node index, mode)`` pair or such a dict."""
    if not fusion:
        return {}
    if isinstance(fusion, dict):
        return fusion
    return {fusion[0]: fusion[1]}


def _base_layer(layer):
    """The layer behind a plan entry (graph models wrap a shared layer in one proxy per use)."""
    return getattr(layer, "wrapped_layer", layer)


def _walk(layer):
    yield layer
    for sub in getattr(layer, "sublayers", ()):
        yield from _walk(sub)


def _reset_grads(layer):
    """Grads of a trainable layer whose output reached no loss this step: the regularizer's part only
    (so the optimizer never applies a stale gradient from an earlier step)."""
    for sub in _walk(layer):
        if not sub.trainable:
            continue
        for key, grad in sub.grads.items():
            grad[...] = 0
            reg = sub._regularizers.get(key)
            if reg is not None:
                reg.add_gradient(sub.params[key], grad)


class ExecutionPlan:
    """Nodes in topological order over integer tensor ids.

    Parameters
    ----------
    nodes : list of PlanNode
    inputs : tuple of int
        Tensor ids fed by the model inputs.
    outputs : tuple of int
        Tensor ids returned as model outputs.
    """

    def __init__(self, nodes, inputs=(0,), outputs=None):
        self.nodes = list(nodes)
        self.inputs = tuple(inputs)
        if outputs is None:
            outputs = (self.nodes[-1].output,) if self.nodes else self.inputs
        self.outputs = tuple(outputs)
        # Last node index reading each tensor, to free activations early.
        last_use = {}
        for i, node in enumerate(self.nodes):
            for t in node.inputs:
                last_use[t] = i
        self._last_use = last_use
        self._producer = {node.output: i for i, node in enumerate(self.nodes)}
        self._placements = {}  # concat_placements by fusion map

    @classmethod
    def chain(cls, layers):
        """The plan of a ``Sequential`` model."""
        return cls([PlanNode(layer, (i,), i + 1) for i, layer in enumerate(layers)], (0,), (len(layers),))

    # -- fused softmax ---------------------------------------------------------
    def output_fusion(self, k):
        """``(node_index, mode)`` when output ``k`` ends in a softmax that can be folded into a
        cross-entropy, else None. Not when the output tensor also feeds another node (that node
        needs probabilities) or is listed as an output twice."""
        if not self.nodes or not 0 <= k < len(self.outputs):
            return None
        t = self.outputs[k]
        idx = self._producer.get(t)
        if idx is None or t in self._last_use or self.outputs.count(t) > 1:
            return None
        mode = _softmax_mode(self.nodes[idx].layer)
        return None if mode is None else (idx, mode)

    def activation_fusion(self):
        """``{node index: mode}`` folding each activation layer into the layer before it.

        A node whose layer is an activation (``epilogue_name``, e.g. "relu") right after a node
        whose layer applies no activation (``final_activation == "linear"``) and lists that name
        in its ``fusable_epilogues``: the first runs with ``epilogue=name`` (mode: the name) and
        the activation node passes its input through ("skip"). Only when the first node's output
        feeds that activation alone and is no model output, and both layers compute in the same
        dtype. Shared layers (their per-use proxies declare nothing) are never fused.
        """
        consumers = {}
        for j, node in enumerate(self.nodes):
            for t in node.inputs:
                consumers.setdefault(t, []).append(j)
        fusion = {}
        for i, node in enumerate(self.nodes):
            layer = node.layer
            fusable = _fusable(layer)
            if not fusable or getattr(layer, "final_activation", None) != "linear" or node.output in self.outputs:
                continue
            users = consumers.get(node.output, [])
            if len(users) != 1 or self.nodes[users[0]].inputs != (node.output,):
                continue
            j = users[0]
            act = self.nodes[j].layer
            name = getattr(act, "epilogue_name", None)
            if name in (None, "linear") or name not in fusable:
                continue
            if getattr(act, "dtype", None) != getattr(layer, "dtype", None):
                continue
            fusion[i] = name
            fusion[j] = "skip"
        # an activation moved past a layer it commutes with (max pooling), onto its smaller output
        for i, node in enumerate(self.nodes):
            name = getattr(node.layer, "final_activation", None)
            users = consumers.get(node.output, [])
            if (i in fusion or name in (None, "linear") or "linear" not in _fusable(node.layer)
                    or node.output in self.outputs or len(users) != 1):
                continue
            j = users[0]
            nxt = self.nodes[j].layer
            if (j in fusion or self.nodes[j].inputs != (node.output,)
                    or name not in getattr(nxt, "commuting_epilogues", ()) or name not in _fusable(nxt)
                    or getattr(nxt, "dtype", None) != getattr(node.layer, "dtype", None)):
                continue
            fusion[i] = "linear"
            fusion[j] = name
        return fusion

    def inference_fusion(self, base=None):
        """``base`` (a fusion map, e.g. :meth:`activation_fusion`) plus the BatchNormalization folds
        of an inference forward (see the module notes); never for a training forward.

        Node i is folded with node j when: i's layer declares ``accepts_affine``, applies no
        activation (``final_activation == "linear"``) and has no mode in ``base``; i's output feeds
        only j and is no model output; j's layer has ``inference_affine`` and the same dtype.
        j's epilogue in ``base`` (BatchNormalization's fused relu) moves to i when i can apply it,
        else nothing is folded; with none, a single activation layer k reading j's output alone
        (not a model output) moves into i too when i lists it in its ``fusable_epilogues``.
        """
        fusion = dict(_fusion_map(base))
        consumers = {}
        for j, node in enumerate(self.nodes):
            for t in node.inputs:
                consumers.setdefault(t, []).append(j)

        def only_user(node):
            users = consumers.get(node.output, [])
            if len(users) != 1 or node.output in self.outputs or self.nodes[users[0]].inputs != (node.output,):
                return None
            return users[0]

        for i, node in enumerate(self.nodes):
            layer = node.layer
            if (not getattr(layer, "accepts_affine", False) or getattr(layer, "final_activation", None) != "linear"
                    or fusion.get(i) is not None):
                continue
            j = only_user(node)
            if j is None or fusion.get(j) == "skip":
                continue
            bn = self.nodes[j].layer
            if not callable(getattr(bn, "inference_affine", None)) or getattr(bn, "dtype", None) != getattr(
                    layer, "dtype", None):
                continue
            epilogue = fusion.get(j)
            k = None
            if epilogue in (None, "linear"):
                epilogue = None
                k = only_user(self.nodes[j])
                name = None if k is None else getattr(self.nodes[k].layer, "epilogue_name", None)
                if (k is None or fusion.get(k) is not None or name in (None, "linear")
                        or name not in _fusable(layer)
                        or getattr(self.nodes[k].layer, "dtype", None) != getattr(layer, "dtype", None)):
                    k = None
                else:
                    epilogue = name
            elif epilogue not in _fusable(layer):
                continue
            fusion[i] = Fold(bn, epilogue)
            fusion[j] = "skip"
            if k is not None:
                fusion[k] = "skip"
        return fusion

    def concat_placements(self, fusion=None, inference=False):
        """``{producer node index: (concat node index, c0, c1, channels)}``: the producers that write
        their output into channels ``[c0, c1)`` of a Concatenate's output of ``channels`` channels
        (see the module notes).

        Producer i qualifies when its layer declares ``accepts_out``, it has no "skip" mode, its
        output feeds only concatenation node j (once among j's inputs) and is no model output;
        node j's layer gives ``channel_slices()``, has no mode in ``fusion`` (its epilogue would
        rewrite the producers' outputs in place) and computes in the producer's dtype. An
        ``inference`` forward with the environment unset places whole concatenations only
        (:func:`copyfree_concat_enabled`).
        """
        fusion = _fusion_map(fusion)
        enabled = copyfree_concat_enabled(inference)
        if not enabled:
            return {}
        # every forward asks: the answer is kept per fusion map (by value; a Fold by its source) once
        # every concatenation is built (the layers' structure cannot change after that)
        key = (enabled, *sorted((i, (id(m.source), m.epilogue) if isinstance(m, Fold) else m)
                                for i, m in fusion.items()))
        cache = self._placements
        if key in cache:
            return cache[key]
        consumers = {}
        for j, node in enumerate(self.nodes):
            for t in node.inputs:
                consumers.setdefault(t, []).append(j)
        placements = {}
        complete = True
        for j, node in enumerate(self.nodes):
            slices_of = getattr(node.layer, "channel_slices", None)
            if not callable(slices_of) or fusion.get(j) is not None or len(node.inputs) < 2:
                continue
            complete = complete and getattr(node.layer, "built", False)
            slices = slices_of()
            if slices is None or len(slices) != len(node.inputs):
                continue
            mine = {}
            for t, (c0, c1) in zip(node.inputs, slices):
                i = self._producer.get(t)
                if (i is None or i >= j or node.inputs.count(t) != 1 or consumers.get(t) != [j]
                        or t in self.outputs or fusion.get(i) == "skip"):
                    continue
                producer = self.nodes[i].layer
                if not getattr(producer, "accepts_out", False) or getattr(producer, "dtype", None) != getattr(
                        node.layer, "dtype", None):
                    continue
                mine[i] = (j, c0, c1, slices[-1][1])
            if enabled != "full" or len(mine) == len(node.inputs):
                placements.update(mine)
        if complete:
            cache[key] = placements
        return placements

    def _placed_out(self, node, x, place, buffers):
        """The slice of its concatenation's output that ``node`` writes into (allocating that
        output at the first producer), or None when ``x``'s shapes do not fit it."""
        j, c0, c1, total = place
        if getattr(x, "ndim", 0) != 4:
            return None
        shape = tuple(node.layer.compute_output_shape(x.shape[1:]))
        if len(shape) != 3 or shape[2] != c1 - c0:
            return None
        buf = buffers.get(j)
        if buf is None:
            buf = buffers[j] = _concat_buffer((x.shape[0], shape[0], shape[1], total), self.nodes[j].layer.dtype)
        elif buf.shape[:3] != (x.shape[0], shape[0], shape[1]):
            return None
        return buf[..., c0:c1]

    def inference_rows(self, rows):
        """Rows per forward for an inference batch of ``rows`` (see INFERENCE_SPLIT_BYTES): ``rows``
        itself unless its largest activation would pass the threshold."""
        per = self._largest_output_bytes()
        if not per or rows * per <= INFERENCE_SPLIT_BYTES:
            return rows
        sub = max(INFERENCE_MIN_ROWS, 1 << max(0, (INFERENCE_TARGET_BYTES // per).bit_length() - 1))
        return min(rows, sub)

    def concurrent_inference(self):
        """True when inference forwards of parts of a batch may run side by side on Python threads:
        every layer (and sublayer) is one of fastconv's own, built, and none runs user code (Lambda).
        Their inference forwards keep no state between calls (``_cache = None``)."""
        cached = self.__dict__.get("_concurrent")
        if cached is not None:
            return cached
        ok = True
        for node in self.nodes:
            for layer in _walk(_base_layer(node.layer)):
                cls = type(layer)
                if (not cls.__module__.startswith("fastconv.") or cls.__name__ == "Lambda"
                        or not getattr(layer, "built", False)):
                    ok = False
        if ok:  # (layers do not change type; an unbuilt one is asked again)
            self._concurrent = ok
        return ok

    def _largest_output_bytes(self):
        """Bytes a sample of the largest node output takes (the layers' per-sample ``output_shape``;
        0 when one is unknown), kept once every layer is built."""
        cached = self.__dict__.get("_largest_output")
        if cached is not None:
            return cached
        largest = 0
        for node in self.nodes:
            shape = getattr(node.layer, "output_shape", None)
            dtype = getattr(node.layer, "dtype", None)
            if not getattr(node.layer, "built", False):
                return 0
            if not isinstance(shape, tuple) or not all(isinstance(d, int) for d in shape) or dtype is None:
                continue  # several outputs, or sizes known only per call: not counted
            n = 1
            for d in shape:
                n *= d
            largest = max(largest, n * _itemsize(dtype))
        self._largest_output = largest
        return largest

    def softmax_fusion(self):
        """``(node_index, mode)`` of a single-output plan whose output ends in a softmax, else None."""
        if len(self.outputs) != 1:
            return None
        return self.output_fusion(0)

    # -- forward -----------------------------------------------------------------
    def forward(self, inputs, training=False, logits=False, upto=None, fusion=None):
        """Run the nodes; ``inputs`` is a list matching ``self.inputs``.

        ``fusion`` (``(node index, mode)`` or ``{node index: mode}``, see :meth:`output_fusion`)
        makes those outputs logits; ``logits=True`` does so for a single-output plan. ``upto``
        (a node index) stops after that node and returns its output. Returns the list of outputs.
        """
        tensors = dict(zip(self.inputs, inputs))
        if fusion is None and logits:
            fusion = self.softmax_fusion()
        fusion = _fusion_map(fusion)
        last_use = self._last_use
        keep = set(self.outputs) | set(self.inputs)
        stop = len(self.nodes) - 1 if upto is None else upto
        placements = self.concat_placements(fusion, inference=not training)
        buffers = {}  # concatenation node index -> its output, allocated by its first placed producer
        for i, node in enumerate(self.nodes):
            if i > stop:
                break
            mode = fusion.get(i) if fusion else None
            if mode == "skip":  # softmax (its output is the logits) or an activation fused upstream
                y = tensors[node.inputs[0]]
            else:
                x = tensors[node.inputs[0]] if len(node.inputs) == 1 else [tensors[t] for t in node.inputs]
                kw = {}
                if i in placements:  # copy-free concatenation: write into the slice
                    out = self._placed_out(node, x, placements[i], buffers)
                    if out is not None:
                        kw["out"] = out
                elif i in buffers:  # the concatenation: copies only the inputs not already in place
                    kw["out"] = buffers.pop(i)
                if mode is None:
                    y = node.layer.forward(x, training, **kw)
                elif isinstance(mode, Fold):  # inference: a BatchNormalization folded into the weights
                    affine = mode.source.inference_affine()
                    if affine is None:
                        raise ValueError(f'The plan folds layer "{mode.source.name}" into "{node.layer.name}", '
                                         "which needs it built")
                    y = node.layer.forward(x, training, epilogue=mode.epilogue, affine=affine, **kw)
                else:  # the layer applies this activation last, for this call ("linear": logits)
                    y = node.layer.forward(x, training, epilogue=mode, **kw)
            tensors[node.output] = y
            if upto is None:
                for t in node.inputs:
                    if last_use.get(t) == i and t not in keep:
                        tensors.pop(t, None)  # (a node may read t twice: Concatenate([x, x]))
        if upto is not None:
            return [tensors[self.nodes[stop].output]]
        return [tensors[t] for t in self.outputs]

    # -- backward ----------------------------------------------------------------
    def backward(self, output_grads, logits=False, fusion=None):
        """Backpropagate ``output_grads`` (list matching ``self.outputs``; None = no loss on that
        output) after a training forward with the same ``fusion``.

        Nodes with no trainable weight upstream are skipped. Every trainable layer's ``grads`` are
        written: layers whose output reached no gradient get zeros (plus their regularizer's part).
        """
        needs = self._needs_backward()
        grads = {}
        # ids of the arrays in ``grads`` that only this pass holds (a sum it allocated, or a gradient
        # from a layer declaring ``fresh_input_grad``): other gradients of that tensor add into them
        owned = set()
        for t, g in zip(self.outputs, output_grads):
            if g is not None:
                _add_grad(grads, owned, t, g, False)
        if fusion is None and logits:
            fusion = self.softmax_fusion()
        fusion = _fusion_map(fusion)
        skipped = []
        ran = set()
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            dy = grads.pop(node.output, None)
            dy_owned = dy is not None and id(dy) in owned
            if dy_owned:
                owned.discard(id(dy))
            # a fused layer's backward follows the epilogue its training forward ran (its cache)
            if fusion and fusion.get(i) == "skip":  # folded into the loss or into the layer before
                t = node.inputs[0]
                if dy is not None and self._tensor_needs(needs, t):
                    _add_grad(grads, owned, t, dy, dy_owned)
                continue
            if not needs[i]:
                continue
            if dy is None:
                skipped.append(node)
                continue
            layer = node.layer
            need_dx = any(self._tensor_needs(needs, t) for t in node.inputs)
            layer.need_input_grad = need_dx
            if type(dy) is np.ndarray and not dy.flags.c_contiguous:
                dy = _contiguous(dy)  # a Concatenate's slice of its dy that no other gradient met
            dx = layer.backward(dy)
            ran.add(id(_base_layer(layer)))
            if not need_dx or dx is None:
                continue
            fresh = getattr(layer, "fresh_input_grad", False) is True
            if len(node.inputs) == 1:
                dx = (dx,)
            for t, g in zip(node.inputs, dx):
                if g is None or not self._tensor_needs(needs, t):
                    continue
                _add_grad(grads, owned, t, g, fresh)
        for node in skipped:  # no gradient reached these layers this step
            base = _base_layer(node.layer)
            if id(base) not in ran:
                ran.add(id(base))
                _reset_grads(base)

    def _tensor_needs(self, needs, t):
        i = self._producer.get(t)
        return False if i is None else needs[i]

    def _needs_backward(self):
        """Per node: True when the node or a node upstream has trainable weights (cached until a
        weight is added or a ``trainable`` flag set: ``fastconv.layers.base.weights_generation``)."""
        from fastconv.engine.flat import weights_generation  # (the layers' counter; no layer class)

        gen = weights_generation()
        cached = self.__dict__.get("_needs_cache")
        if cached is not None and cached[0] == gen:
            return cached[1]
        needs = []
        for node in self.nodes:
            mine = bool(node.layer.trainable_pairs())
            up = any(self._tensor_needs(needs, t) for t in node.inputs)
            needs.append(mine or up)
        self._needs_cache = (gen, needs)
        return needs

    @property
    def layers(self):
        """Each layer once (a shared layer's per-use proxies count as one)."""
        seen, out = set(), []
        for node in self.nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                out.append(node.layer)
        return out
