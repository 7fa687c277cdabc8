"""Exports of a spec's network to other formats. :func:`native.export_native`:
canonical weights as a framework's own weight file (``archspec weights export``).
:func:`onnx.export_onnx`: the generated PyTorch model as an ONNX file
(``archspec export --format onnx``)."""
