"""balcon: Balanced Contrastive Learning (BCL, CVPR 2022) for long-tailed recognition.

The pipeline, one module or subpackage a stage: ``balcon.methods`` (the method table)
-> ``balcon.config`` -> ``balcon.data`` -> ``balcon.models`` -> ``balcon.losses`` ->
``balcon.engine`` (training) -> ``balcon.runs`` (run keeping) -> ``balcon.report`` ->
``balcon.export`` -> ``balcon.cli``.
"""

from balcon.errors import BalconError

__version__ = "0.10.1"
__all__ = ["BalconError", "__version__"]
