"""The model engine: the model classes and what runs them, one concern per module.

Layering (each module imports only modules listed below it, and none imports this package's
``__init__``, which holds nothing but this note)::

    functional.py   Model(inputs, outputs): the graph model (and its Functional half: graph walk,
                    plan compilation, summary rows, config)
    sequential.py   Sequential: a chain of layers
    base.py         BaseModel: compile / fit / evaluate / predict / weights / summary / save
    trainer.py      fit / evaluate / predict / train_on_batch / test_on_batch loops and steps
    objective.py    per-output losses, their gradients, metrics and running totals
    data.py         x / y splitting checks, batch size, array and generator batches
    progbar.py      the Keras progress bar
    interrupt.py    Ctrl-C during fit
    shared.py       per-use proxies of a layer a graph calls at several nodes
    onnx_export.py  a model's plan as an ONNX graph (``model.export``; loads onnx when it runs)
    graph.py        ExecutionPlan and PlanNode: forward / backward over tensor ids, and the fusions

Below the engine: ``fastconv.layers`` (with ``layers/_symbolic.py``, the symbolic tensors and graph
nodes, at its bottom), ``fastconv.saving`` (which finds model classes through the layer registry),
``fastconv.callbacks`` and the leaf modules (losses, metrics, optimizers, activations, ...).
"""
