"""Fail the install with one clear line when torch and torchvision do not work together.

This machine kind's pip configuration offers a CPU-only torch wheel through find-links; torchvision from PyPI
is built against the full torch and fails to import next to it (operator torchvision::nms does not exist).
"""

import sys

try:
    import torch
    import torchvision.ops  # noqa: F401 - importing the ops registers torchvision::nms
    import timm  # noqa: F401
    torchvision_ok = hasattr(torch.ops.torchvision, "nms")
except Exception as exc:  # noqa: BLE001
    print(f"install check failed: torch/torchvision/timm do not import together ({type(exc).__name__}: {exc}). "
          "Remove .venv and run make again so torch and torchvision are resolved together.", file=sys.stderr)
    sys.exit(1)
if not torchvision_ok:
    print("install check failed: torchvision's operators are missing; remove .venv and run make again.", file=sys.stderr)
    sys.exit(1)
print(f"install check: torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}: ok")
