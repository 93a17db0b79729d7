"""Moved to :mod:`worker.engine.layers` (the layer spec belongs to the engine, which takes it at every stage).

This alias only keeps code written against the old path importing while it is updated; import
``worker.engine.layers`` in new code.
"""

from worker.engine.layers import LayerSpec, default_layers, probe_output_shapes, resolve_layers

__all__ = ["LayerSpec", "default_layers", "probe_output_shapes", "resolve_layers"]
