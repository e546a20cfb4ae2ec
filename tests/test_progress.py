"""AMIXUP_PROGRESS=terminal: a notebook's progress bar goes to the terminal that runs papermill, not into the notebook."""

import json
import os
import re
import subprocess
import sys

import nbformat

CODE = """
import torch
from amixup import data, experiments
from amixup.recipes import make_config

def load(split):
    labels = torch.arange(40) % 2
    images = (labels.view(-1, 1, 1, 1) * 100 + torch.zeros(40, 3, 8, 8, dtype=torch.long)).to(torch.uint8)
    return data.ImageData(images, labels, ["x", "y"], "tiny")

data.register_dataset("tiny", load)
config = make_config("motivation", "smoke", dataset="tiny", epochs=3, experiment="p")
records = experiments.run_configs([config], RESULTS)
print("records:", len(records), config.run_id())
"""


def test_progress_goes_to_the_terminal_not_into_the_notebook(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CODE.replace("RESULTS", repr(str(tmp_path))))])
    nbformat.write(nb, tmp_path / "in.ipynb")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # as outside pytest
    env = {**env, "AMIXUP_PROGRESS": "terminal", "AMIXUP_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "papermill", str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"),
                           "-k", "python3", "--no-progress-bar"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = json.loads((tmp_path / "out.ipynb").read_text())["cells"][0]["outputs"]
    assert [o.get("name") for o in outputs] == ["stdout"]  # no stderr output: no bars in the notebook
    # one overall bar: runs done / total, the stage (experiment) and what the run is, its epoch, time left
    assert re.search(r"runs 0/1 \| p: ce tiny s0 \| epoch [0-3]/3", done.stderr) and "runs 1/1" in done.stderr
    assert "3/3 epochs [" in done.stderr
