"""ONNX export (the public face of :mod:`fastconv.engine.onnx_export`).

``to_onnx(model, opset=17)`` returns an ``onnx.ModelProto``; ``export(model, path, opset=17)``
writes it atomically (as ``model.export(path, format="onnx")`` does). The model's inputs and
outputs stay NHWC, the batch size is free, and the graph is inference mode in float32.
Needs the ``onnx`` package: ``pip install 'fastconv[onnx]'``.

Examples
--------
>>> from fastconv import models, onnx as fc_onnx
>>> proto = fc_onnx.to_onnx(models.lenet5())  # doctest: +SKIP
>>> [i.name for i in proto.graph.input]  # doctest: +SKIP
['input']
"""

from fastconv.engine.onnx_export import DEFAULT_OPSET, MIN_OPSET, export, to_onnx

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export", "to_onnx"]
