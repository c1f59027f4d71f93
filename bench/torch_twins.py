"""The same network in PyTorch as a fastconv model: one translator for every benchmark.

``torch_twin(model, torch)`` builds an ``nn.Module`` (NCHW) from a built fastconv ``Sequential`` or
functional ``Model``, layer by layer from ``get_config()`` and the shapes the model computed: same
widths, kernels, strides, dilations, groups, BatchNormalization, activations and dropout, so the two
cannot drift apart. A final softmax is left out, since PyTorch folds it into ``cross_entropy`` as
fastconv folds it into its loss.

Two modes:

- ``exact=False`` (benchmarks): what a PyTorch user would write. Keras's ``"same"`` padding becomes
  PyTorch's symmetric ``padding=k // 2`` where that gives the same output size (it differs from
  Keras's only in where the odd padding row goes, not in FLOPs), and ``Flatten`` flattens NCHW.
- ``exact=True`` (tests): the twin computes what fastconv computes, so that ``copy_weights`` plus an
  eval-mode forward reproduces ``model.predict``: asymmetric padding is an explicit pad, ``Flatten``
  flattens in NHWC order. ``tests/test_torch_twins.py`` checks every zoo network this way, which is
  what makes the benchmarks' "same network" a checked claim.
"""

from __future__ import annotations

import math

import numpy as np

#: activations by fastconv name -> torch.nn class name
_ACTS = {
    "relu": "ReLU",
    "relu6": "ReLU6",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "swish": "SiLU",
    "silu": "SiLU",
    "elu": "ELU",
    "selu": "SELU",
    "gelu": "GELU",
    "hard_swish": "Hardswish",
    "softplus": "Softplus",
}


def _activation(name, last, nn):
    if name in (None, "linear") or (name == "softmax" and last):
        return None
    if name == "softmax":
        return nn.Softmax(dim=1)
    if name not in _ACTS:
        raise NotImplementedError(f"activation {name!r}")
    return getattr(nn, _ACTS[name])()


def _same_pads(size, k, s, d):
    """Keras's "same" padding of one axis: (before, after)."""
    eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def _pads(cfg, in_hw, k, s, d):
    if cfg["padding"] != "same":
        return (0, 0), (0, 0)
    return tuple(_same_pads(n, kk, ss, dd) for n, kk, ss, dd in zip(in_hw, k, s, d))


def _native(pads, in_hw, k, s, d):
    """Symmetric PyTorch padding with the same output size as ``pads``, or None."""
    sym = []
    for (a, b), n, kk, ss, dd in zip(pads, in_hw, k, s, d):
        p = ((kk - 1) * dd) // 2 if a + b else 0
        if (n + 2 * p - (kk - 1) * dd - 1) // ss != (n + a + b - (kk - 1) * dd - 1) // ss:
            return None
        sym.append(p)
    return tuple(sym)


class _Builder:
    def __init__(self, torch, exact):
        self.torch, self.nn, self.exact = torch, torch.nn, exact
        nn = self.nn

        class Lambda(nn.Module):
            def __init__(self, fn):
                super().__init__()
                self.fn = fn

            def forward(self, x):
                return self.fn(x)

        self.Lambda = Lambda

    def pad_then(self, pads, in_hw, k, s, d, make, fill=0.0):
        """``make(padding)`` preceded by an explicit pad when PyTorch's symmetric one can't serve."""
        nn = self.nn
        (t, b), (left, r) = pads
        if t == b and left == r:
            return make((t, left))
        if not self.exact:
            sym = _native(pads, in_hw, k, s, d)
            if sym is not None:
                return make(sym)
        return nn.Sequential(nn.ConstantPad2d((left, r, t, b), fill), make((0, 0)))

    def layer(self, layer, in_shapes, out_shape, last):
        """An nn.Module for one fastconv layer (inputs NCHW), or a merge op name."""
        nn, torch = self.nn, self.torch
        kind = type(layer).__name__
        cfg = layer.get_config()
        shape = in_shapes[0]
        if kind == "InputLayer":
            return nn.Identity()
        if kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
            c_in = shape[-1]
            k, s, d = tuple(cfg["kernel_size"]), tuple(cfg["strides"]), tuple(cfg.get("dilation_rate", (1, 1)))
            pads = _pads(cfg, shape[:2], k, s, d)
            bias = cfg.get("use_bias", True)
            mult = cfg.get("depth_multiplier", 1)
            if kind == "Conv2D":
                make = lambda p: nn.Conv2d(c_in, cfg["filters"], k, s, p, d, cfg.get("groups", 1), bias=bias)
            elif kind == "DepthwiseConv2D":
                make = lambda p: nn.Conv2d(c_in, c_in * mult, k, s, p, d, c_in, bias=bias)
            else:
                make = lambda p: nn.Sequential(
                    nn.Conv2d(c_in, c_in * mult, k, s, p, d, c_in, bias=False),
                    nn.Conv2d(c_in * mult, cfg["filters"], 1, bias=bias),
                )
            conv = self.pad_then(pads, shape[:2], k, s, d, make)
            act = _activation(cfg.get("activation"), last, nn)
            return conv if act is None else nn.Sequential(conv, act)
        if kind == "Conv2DTranspose":
            c_in = shape[-1]
            k, s, d = tuple(cfg["kernel_size"]), tuple(cfg["strides"]), tuple(cfg.get("dilation_rate", (1, 1)))
            full = [(n - 1) * ss + (kk - 1) * dd + 1 for n, ss, kk, dd in zip(shape[:2], s, k, d)]
            crop = [f - o for f, o in zip(full, out_shape[:2])]  # rows cut from the full output
            args = (c_in, cfg["filters"], k, s)
            rest = {"groups": cfg.get("groups", 1), "bias": cfg.get("use_bias", True), "dilation": d}
            if self.exact or any(c < 0 for c in crop):
                # fastconv cuts the full output at the matching conv's top/left "same" padding
                top = [_same_pads(o, kk, ss, dd)[0] if cfg["padding"] == "same" else 0
                       for o, kk, ss, dd in zip(out_shape[:2], k, s, d)]
                oh, ow = out_shape[:2]
                extra = tuple(max(o + t - f, 0) for o, t, f in zip(out_shape[:2], top, full))
                conv = nn.Sequential(
                    nn.ConvTranspose2d(*args, 0, extra, **rest),
                    self.Lambda(lambda x: x[:, :, top[0] : top[0] + oh, top[1] : top[1] + ow]),
                )
            else:
                pad = tuple(-(-c // 2) for c in crop)
                conv = nn.ConvTranspose2d(*args, pad, tuple(2 * p - c for p, c in zip(pad, crop)), **rest)
            act = _activation(cfg.get("activation"), last, nn)
            return conv if act is None else nn.Sequential(conv, act)
        if kind == "BatchNormalization":
            bn = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            return bn(shape[-1], eps=cfg["epsilon"], momentum=1.0 - cfg["momentum"])
        if kind in ("Activation", "ReLU", "Softmax"):
            name = cfg.get("activation", "softmax" if kind == "Softmax" else "relu")
            act = _activation(name, last, nn)
            return nn.Identity() if act is None else act
        if kind == "Dense":
            lin = nn.Linear(shape[-1], cfg["units"], bias=cfg.get("use_bias", True))
            act = _activation(cfg.get("activation"), last, nn)
            return lin if act is None else nn.Sequential(lin, act)
        if kind in ("Dropout", "SpatialDropout2D"):
            return nn.Dropout(cfg["rate"]) if kind == "Dropout" else nn.Dropout2d(cfg["rate"])
        if kind in ("MaxPooling2D", "AveragePooling2D"):
            k, s = tuple(cfg["pool_size"]), tuple(cfg["strides"])
            pads = _pads(cfg, shape[:2], k, s, (1, 1))
            if kind == "MaxPooling2D":
                make = lambda p: nn.MaxPool2d(k, s, p)
                return self.pad_then(pads, shape[:2], k, s, (1, 1), make, fill=-math.inf)
            if pads[0][0] != pads[0][1] or pads[1][0] != pads[1][1]:
                sym = None if self.exact else _native(pads, shape[:2], k, s, (1, 1))
                if sym is not None:
                    return nn.AvgPool2d(k, s, sym, count_include_pad=False)
                # fastconv's average leaves padding out of the count: sum over window / real pixels
                (t, b), (left, r) = pads
                fn = torch.nn.functional

                def avg(x, k=k, s=s, pad=(left, r, t, b)):
                    ones = torch.ones_like(x[:1, :1])
                    total = fn.avg_pool2d(fn.pad(x, pad), k, s)
                    return total / fn.avg_pool2d(fn.pad(ones, pad), k, s)

                return self.Lambda(avg)
            return nn.AvgPool2d(k, s, (pads[0][0], pads[1][0]), count_include_pad=False)
        if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            keep = cfg.get("keepdims", False)
            if kind == "GlobalAveragePooling2D":
                return self.Lambda(lambda x: x.mean(dim=(2, 3), keepdim=keep))
            return self.Lambda(lambda x: x.amax(dim=(2, 3), keepdim=keep))
        if kind == "Flatten":
            if self.exact and len(shape) == 3:
                return self.Lambda(lambda x: x.permute(0, 2, 3, 1).flatten(1))
            return nn.Flatten()
        if kind == "Reshape":
            target = tuple(cfg["target_shape"])

            def reshape(x, nd=len(shape), target=target):  # noqa: B008  (bound now, read per call)
                if nd == 3:
                    x = x.permute(0, 2, 3, 1)
                x = x.reshape(x.shape[0], *target)
                return x.permute(0, 3, 1, 2) if len(target) == 3 else x

            return self.Lambda(reshape)
        if kind == "ChannelShuffle":
            g = cfg["groups"]

            def shuffle(x, g=g):
                n, c, h, w = x.shape
                return x.reshape(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)

            return self.Lambda(shuffle)
        if kind == "ResidualBlock":
            return self.residual(layer, shape, last)
        if kind in ("Add", "Multiply", "Concatenate", "Average", "Subtract"):
            return kind
        raise NotImplementedError(f"layer {kind} ({layer.name})")

    def chain(self, layers, shape, last):
        mods = []
        for i, layer in enumerate(layers):
            out = tuple(layer.compute_output_shape(tuple(shape)))
            mods.append(self.layer(layer, [tuple(shape)], out, last and i == len(layers) - 1))
            shape = out
        return self.nn.Sequential(*mods), shape

    def residual(self, block, shape, last):
        nn = self.nn
        main, _ = self.chain(block.layers, shape, False)
        short = self.chain(block.shortcut, shape, False)[0] if block.shortcut else nn.Identity()
        act = _activation(block.final_activation, last, nn) or nn.Identity()

        class Residual(nn.Module):
            def __init__(self):
                super().__init__()
                self.main, self.short, self.act = main, short, act

            def forward(self, x):
                return self.act(self.main(x) + self.short(x))

        return Residual()


def _merge(kind, xs):
    y = xs[0]
    if kind == "Concatenate":
        import torch

        return torch.cat(xs, dim=1)
    for x in xs[1:]:
        if kind == "Add":
            y = y + x
        elif kind == "Multiply":
            y = y * x
        elif kind == "Subtract":
            y = y - x
        elif kind == "Average":
            y = y + x
    return y / len(xs) if kind == "Average" else y


def torch_twin(model, torch, exact=False):
    """An ``nn.Module`` (NCHW in, logits out) running the fastconv ``model`` in PyTorch."""
    nn = torch.nn
    b = _Builder(torch, exact)
    if not hasattr(model, "nodes"):  # Sequential
        layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
        net, _ = b.chain(layers, tuple(model.input_shape[1:]), True)
        return net
    plan = model._plan()
    shapes = {tid: tuple(t.sample_shape) for tid, t in zip(plan.inputs, model.inputs)}
    steps, mods = [], nn.ModuleDict()
    for pnode, gnode in zip(plan.nodes, model.nodes):
        ins = [shapes[t] for t in pnode.inputs]
        out = tuple(gnode.outputs[0].sample_shape)
        shapes[pnode.output] = out
        mod = b.layer(gnode.layer, ins, out, pnode.output in plan.outputs)
        key = f"m{len(steps)}"
        if not isinstance(mod, str):
            mods[key] = mod
        steps.append((mod if isinstance(mod, str) else "module", key, tuple(pnode.inputs), pnode.output))
    first, result = plan.inputs[0], plan.outputs[0]

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.mods = mods

        def forward(self, x):
            t = {first: x}
            for op, key, ins, out in steps:
                xs = [t[i] for i in ins]
                t[out] = self.mods[key](xs[0]) if op == "module" else _merge(op, xs)
            return t[result]

    return Graph()


def _weighted_layers(layers):
    """fastconv layers with weights, in the order their torch modules are created (blocks opened)."""
    for layer in layers:
        if type(layer).__name__ == "ResidualBlock":
            yield from _weighted_layers(layer.layers)
            yield from _weighted_layers(layer.shortcut)
        elif layer.get_weights():
            yield layer


def copy_weights(model, net, torch):
    """Copy the fastconv ``model``'s weights into its twin ``net`` (Keras layouts -> PyTorch's)."""
    layers = model.layers if not hasattr(model, "nodes") else [n.layer for n in model.nodes]
    torch_params = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d,
                                                                torch.nn.Linear, torch.nn.modules.batchnorm._BatchNorm))]
    it = iter(torch_params)
    seen = set()
    with torch.no_grad():
        for layer in _weighted_layers(layers):
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            kind = type(layer).__name__
            w = layer.get_weights()
            if kind == "Conv2D":
                m = next(it)
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(w[0].transpose(3, 2, 0, 1))))
                if len(w) > 1:
                    m.bias.copy_(torch.from_numpy(w[1]))
            elif kind in ("DepthwiseConv2D", "SeparableConv2D"):
                m = next(it)
                kh, kw, c, mult = w[0].shape
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(w[0].transpose(2, 3, 0, 1)).reshape(c * mult, 1, kh, kw)))
                rest = w[1:]
                if kind == "SeparableConv2D":
                    m = next(it)
                    m.weight.copy_(torch.from_numpy(np.ascontiguousarray(rest[0].transpose(3, 2, 0, 1))))
                    rest = rest[1:]
                if rest:
                    m.bias.copy_(torch.from_numpy(rest[0]))
            elif kind == "Conv2DTranspose":
                m = next(it)
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(w[0].transpose(3, 2, 0, 1))))
                if len(w) > 1:
                    m.bias.copy_(torch.from_numpy(w[1]))
            elif kind == "Dense":
                m = next(it)
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(w[0].T)))
                if len(w) > 1:
                    m.bias.copy_(torch.from_numpy(w[1]))
            elif kind == "BatchNormalization":
                m = next(it)
                gamma, beta, mean, var = w
                m.weight.copy_(torch.from_numpy(gamma))
                m.bias.copy_(torch.from_numpy(beta))
                m.running_mean.copy_(torch.from_numpy(mean))
                m.running_var.copy_(torch.from_numpy(var))
            else:
                raise NotImplementedError(f"weights of {kind} ({layer.name})")
