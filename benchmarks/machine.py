"""What every benchmark records about where it ran: CPU, ISA level, threads, backend."""
from __future__ import annotations

import datetime
import os
import subprocess
from typing import Any

import torch

from emobatch import __version__
from emobatch.faces.device import cpu_isa, cpu_model


def machine_info(pipe: Any = None) -> dict[str, Any]:
    """cpu_model, isa (amx / avx512 / avx2 / generic, after any ONEDNN_MAX_CPU_ISA /
    ATEN_CPU_CAPABILITY cap), threads, the backends of a FacePipeline's classifier and
    detector, versions, commit, date."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip() or None
    except OSError:
        commit = None
    caps = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if k in os.environ}
    return {"cpu_model": cpu_model(), "isa": cpu_isa(), "isa_caps": caps or None,
            "threads": torch.get_num_threads(), "cores": os.cpu_count(),
            "backend": getattr(getattr(pipe, "classifier", None), "backend", None),
            "detector_backend": getattr(getattr(pipe, "detector", None), "backend", None),
            "detector_backend_stills": getattr(getattr(pipe, "still_detector", None), "backend",
                                               None),
            "torch": torch.__version__,
            "emobatch": __version__, "commit": commit,
            "date": datetime.date.today().isoformat()}
