"""Runs a helper script inside the torch venv that `scripts/env.sh` provisions, with HF
transformers installed there on first use. Shared by the scripts that compare against PyTorch."""

import os
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("MVT_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mvt"))
VENV = Path(os.environ.get("MVT_TORCH_VENV", CACHE / "torch-2.11.0"))
TRANSFORMERS = "transformers==5.23.0"


def reexec_in_venv(script):
    """Re-runs `script` with the venv's python (installing transformers there) unless this
    process already is that python."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        sys.exit(f"no torch venv at {VENV}; run scripts/mvt once first to set it up")
    check = subprocess.run([python, "-c", "import transformers"], capture_output=True)
    if check.returncode != 0:
        print(f"installing {TRANSFORMERS} into {VENV}", file=sys.stderr)
        subprocess.run([python, "-m", "pip", "install", "--quiet", TRANSFORMERS], check=True)
    os.execv(python, [str(python), str(script), *sys.argv[1:]])
