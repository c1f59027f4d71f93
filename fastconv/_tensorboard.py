"""TensorBoard event files, written with the ``tensorboard`` package's own writer and protos.

The one module of fastconv that imports ``tensorboard`` (an optional extra:
``pip install 'fastconv[tensorboard]'``); ``fastconv.callbacks.TensorBoard`` imports it only
when it is constructed, so ``import fastconv`` never needs the package. No TensorFlow: the
summaries are the protos TensorFlow 2 itself writes (a scalar is a float32 tensor with the
``scalars`` plugin's metadata, a histogram a ``(k, 3)`` tensor of bucket edges and counts with
the ``histograms`` plugin's, an image a string tensor ``[width, height, png]`` with the
``images`` plugin's), which TensorBoard reads without translation.

``EventWriter`` is one run directory (``log_dir/train`` or ``log_dir/validation``);
``graph_def`` turns a model config (Keras JSON layout) into a ``GraphDef`` of one node per
layer, and ``png`` encodes a uint8 image with the standard library only.
"""

from __future__ import annotations

import json
import struct
import time
import zlib

import numpy as np

try:
    from tensorboard.compat.proto import event_pb2, graph_pb2, node_def_pb2, summary_pb2
    from tensorboard.plugins.graph import metadata as graph_metadata
    from tensorboard.plugins.histogram import summary_v2 as histogram_summary
    from tensorboard.plugins.image import metadata as image_metadata
    from tensorboard.plugins.scalar import metadata as scalar_metadata
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util
except ImportError as e:  # tests hide tensorboard through sys.modules
    raise ImportError(
        "fastconv.callbacks.TensorBoard needs the `tensorboard` package (no TensorFlow needed): "
        "pip install 'fastconv[tensorboard]'"
    ) from e

__all__ = ["EventWriter", "graph_def", "kernel_grid", "png"]


class EventWriter:
    """Summaries for one run directory, appended to a TensorBoard event file."""

    def __init__(self, logdir: str):
        self.logdir = logdir
        self._writer = EventFileWriter(logdir)

    def _add(self, summary, step: int):
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), summary=summary, step=int(step)))

    def scalar(self, tag: str, value, step: int):
        meta = scalar_metadata.create_summary_metadata(display_name=tag, description="")
        tensor = tensor_util.make_tensor_proto(np.float32(value))
        self._add(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=tensor)]),
                  step)

    def histogram(self, tag: str, data, step: int, buckets: int = 30):
        self._add(histogram_summary.histogram_pb(tag, np.asarray(data, np.float64), buckets=buckets), step)

    def image(self, tag: str, img, step: int):
        """One uint8 image of shape (h, w) or (h, w, 1|3|4)."""
        img = np.asarray(img)
        h, w = img.shape[:2]
        meta = image_metadata.create_summary_metadata(display_name=tag, description="")
        tensor = tensor_util.make_tensor_proto(
            np.array([str(w).encode(), str(h).encode(), png(img)], dtype=object)
        )
        self._add(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=tensor)]),
                  step)

    def graph(self, config: dict, model_json: str):
        """The model as a ``GraphDef`` (the Graphs tab's op graph) and its Keras JSON (the tab's
        conceptual graph, tag ``keras``, as ``tf.keras`` wrote it)."""
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), graph_def=graph_def(config).SerializeToString()))
        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(
                plugin_name=graph_metadata.PLUGIN_NAME_KERAS_MODEL, content=b"1"
            )
        )
        tensor = tensor_util.make_tensor_proto(np.array(model_json.encode(), dtype=object))
        self._add(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="keras", metadata=meta, tensor=tensor)]),
                  0)

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()


def graph_def(config: dict):
    """A ``GraphDef`` with one node per layer (op = the layer's class) from a model's Keras-layout
    config: a Sequential's layers feed each other in order; a functional model's ``inbound_nodes``
    name each layer's inputs."""
    cfg = config.get("config", config)
    layers = cfg.get("layers", [])
    nodes = []
    previous = None
    for spec in layers:
        name = spec.get("name") or spec.get("config", {}).get("name")
        if "inbound_nodes" in spec:
            inputs = [arg[0] for node in spec["inbound_nodes"] for arg in node.get("args", [])
                      if isinstance(arg, (list, tuple)) and arg and isinstance(arg[0], str)]
        else:
            inputs = [previous] if previous else []
        node = node_def_pb2.NodeDef(name=name, op=spec["class_name"], input=inputs)
        node.attr["config"].s = json.dumps(spec.get("config", {}), sort_keys=True).encode()
        nodes.append(node)
        previous = name
    return graph_pb2.GraphDef(node=nodes)


def kernel_grid(kernel) -> np.ndarray:
    """A conv kernel ``(kh, kw, cin, cout)`` as one uint8 picture: each output filter is a column
    of its ``cin`` input slices stacked vertically, filters side by side with a one-pixel gap,
    scaled so the kernel's min is black and its max white."""
    k = np.asarray(kernel, np.float64)
    kh, kw, cin, cout = k.shape
    lo, hi = float(k.min()), float(k.max())
    scaled = np.zeros_like(k) if hi == lo else (k - lo) / (hi - lo)
    out = np.zeros((cin * (kh + 1) - 1, cout * (kw + 1) - 1), np.float64)
    for o in range(cout):
        for i in range(cin):
            out[i * (kh + 1): i * (kh + 1) + kh, o * (kw + 1): o * (kw + 1) + kw] = scaled[:, :, i, o]
    return np.round(out * 255).astype(np.uint8)


def png(img) -> bytes:
    """PNG bytes of a uint8 image (h, w) grey or (h, w, c) with c in 1 (grey), 3 (RGB), 4 (RGBA)."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    color = {1: 0, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))  # filter type 0 on every row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
