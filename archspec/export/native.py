"""``archspec weights export``: canonical weights as a framework's own weight file.

The file is what the standalone generated code loads with its framework alone
(each generated file's docstring shows the line):

=========== ============================ ==============================================================
target      file                         loaded by
=========== ============================ ==============================================================
pytorch     ``NAME.pt`` (a state_dict)   ``model.load_state_dict(torch.load(f))``
keras       ``NAME.weights.h5``          ``model.load_weights(f)``
chainer     ``NAME.npz``                 ``chainer.serializers.load_npz(f, model)``
tensorflow  ``PREFIX.index`` + ``.data`` ``tf.train.Checkpoint(model=model).restore(PREFIX).expect_partial()``
=========== ============================ ==============================================================

The weights are checked against the spec (keys and shapes) before anything is
built; the model is the generated code of the spec as compiled (``--set`` and
``--input`` applied), so ``num_classes`` must be the one the weights were
trained with. Files are written into a temporary folder beside the output and
moved into place only when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from archspec import runtime
from archspec import weights as W
from archspec.codegen.model import class_name
from archspec.pipeline import Compiled


class ExportError(Exception):
    """The export cannot be written; the message says why and what to do."""


def _save(target: str, model, path: Path) -> None:
    """Write ``model``'s weights in the framework's own format at ``path``."""
    if target == "pytorch":
        import torch

        torch.save(model.state_dict(), path)
    elif target == "keras":
        model.save_weights(path)
    elif target == "chainer":
        import chainer

        chainer.serializers.save_npz(str(path), model)
    else:
        import tensorflow as tf

        tf.train.Checkpoint(model=model).write(str(path))


def export_native(compiled: Compiled, weights_path: Path, target: str, out: Path) -> list[Path]:
    """Write the weights at ``weights_path`` (a canonical .npz) for ``target`` at
    ``out``; return the files written. Raises WeightError or ExportError."""
    if target not in runtime.TARGETS:
        raise ExportError(f"unknown target {target!r}; choose from {', '.join(runtime.TARGETS)}")
    if target == "keras" and not out.name.endswith(".weights.h5"):
        raise ExportError(f"-o {out}: Keras writes weights only to a file named *.weights.h5; give such a name")
    if not Path(weights_path).is_file():
        raise ExportError(f"{weights_path}: no such weights file")
    weights = W.load(weights_path, compiled)
    from archspec.verify import generate

    rt = runtime.get(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".archspec-export-", dir=out.parent) as tmp:
        module = generate(compiled, [target], Path(tmp))[target]
        if isinstance(module, str):
            raise ExportError(module)
        params = compiled.graph.params
        kwargs = {"num_classes": params["num_classes"]} if "num_classes" in params else {}
        model = rt.build(module, class_name(compiled.graph.name), **kwargs)
        rt.load_weights(model, weights)
        staged = Path(tmp) / "out" / out.name
        staged.parent.mkdir()
        _save(target, model, staged)
        written = []
        for f in sorted(staged.parent.iterdir()):
            if f.name == "checkpoint":  # TensorFlow's index of a folder of checkpoints: not needed for one file
                continue
            dest = out.parent / f.name
            if dest.is_dir():
                raise ExportError(f"{dest} is a folder; choose another -o")
            os.replace(f, dest)
            written.append(dest)
        shutil.rmtree(staged.parent, ignore_errors=True)
    return written
