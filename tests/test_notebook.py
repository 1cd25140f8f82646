"""tutorial.ipynb runs top to bottom on a clean checkout and shows what it promises.

The notebook is re-executed with nbclient in a temporary copy of the repository without out/ and runs/ (a clean
clone, as in CI), so the committed outputs are never touched and the path that trains in the notebook is the one
tested. Stale outputs cannot pass: every output is cleared before execution. The notebook trains a small tokenizer
and transformer, so this file takes one to three minutes on 2 CPU cores (the rest of the suite: seconds per file).

Try it:
    python -m pytest -q tests/test_notebook.py
Refresh the outputs stored in tutorial.ipynb (after changing the package), from the repository root:
    python -c "import nbformat; from nbclient import NotebookClient; nb = nbformat.read('tutorial.ipynb', 4); \
NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': '.'}}).execute(); \
nbformat.write(nb, 'tutorial.ipynb')"
"""
import base64
import io
import math
import os
import re
import shutil

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "tutorial.ipynb")
CELL_TIMEOUT = 600        # seconds per cell: the two training cells take about a minute each on a busy 2-core machine
MAX_NOTEBOOK_BYTES = 2 * 2**20   # the committed notebook (with its PNGs) must stay readable on a code-hosting site
# plots per section: 1 cost curves, 2 filmstrip + trajectories, 3 reconstructions + codebook/PSNR, 4 memory growth,
# 5 split + p(T), 6 loss curve, 7 unmasking + reveal steps + samples + prediction + objects found
MIN_PLOTS = {"1": 1, "2": 1, "3": 2, "4": 1, "5": 2, "6": 1, "7": 5}


def copy_repository(destination: str) -> None:
    """The working tree minus what a clean clone would not have (training outputs, caches, git metadata)."""
    shutil.copytree(ROOT, destination, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".git", "out", "runs", ".venv*", "__pycache__", ".pytest_cache",
                                                  ".ipynb_checkpoints", "*.pt"))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """(notebook after execution, the repository copy it ran in)."""
    repo = str(tmp_path_factory.mktemp("repo"))
    copy_repository(repo)
    nb = nbformat.read(os.path.join(repo, "tutorial.ipynb"), as_version=4)
    for cell in nb.cells:                      # nothing committed may satisfy a check below
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": repo}})
    client.execute()                           # raises CellExecutionError on the first cell that fails
    return nb, repo


def sections(nb) -> dict[str, list]:
    """Code cells grouped under the markdown heading "## N. ..." that precedes them."""
    grouped, current = {}, None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = re.search(r"^## (\d+)\.", cell.source, re.MULTILINE)
            current = heading.group(1) if heading else current
        elif current is not None:
            grouped.setdefault(current, []).append(cell)
    return grouped


def stdout(cells) -> str:
    return "".join(o.get("text", "") for c in cells for o in c.outputs if o.output_type == "stream" and o.name == "stdout")


def pngs(cells) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(o.data["image/png"]))).convert("RGB"))
            for c in cells for o in c.outputs if "image/png" in o.get("data", {})]


def test_every_cell_runs_and_no_error_is_printed(executed):
    nb, _ = executed
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    stderr = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr[-2000:]


def test_every_section_draws_its_plots(executed):
    grouped = sections(executed[0])
    assert sorted(grouped) == [str(i) for i in range(1, 9)]
    for section, minimum in MIN_PLOTS.items():
        images = pngs(grouped[section])
        assert len(images) >= minimum, f"section {section}: {len(images)} plots, expected at least {minimum}"
        for image in images:   # a real picture: not one flat colour, not a sliver
            assert min(image.shape[:2]) >= 40 and image.std() > 5, f"section {section}: an empty-looking plot"


def test_printed_numbers_tell_the_story(executed):
    grouped = sections(executed[0])
    # 1: at 128 frames full attention's saved activations are a large multiple of MeBT's (paper width, counted)
    rows = {int(r[0]): r for r in re.findall(r"^\s*(\d+)\s+(\d+) \|.*\|\s*([\d.]+)x$", stdout(grouped["1"]), re.MULTILINE)}
    assert sorted(rows) == [16, 32, 64, 128] and float(rows[128][2]) > 50 > float(rows[16][2])
    # 3: the tokenizer was trained here (no out/ in a clean clone) and reconstructs held-out videos clearly better
    # than painting each one its mean colour (already ~17 dB: the background is most of every frame)
    text3 = stdout(grouped["3"])
    assert "held-out PSNR" in text3 and "Using the tokenizer from" not in text3
    recon, flat = map(float, re.search(r"mean ([\d.]+) dB \(for scale: a flat mean colour scores ([\d.]+) dB", text3).groups())
    assert recon > flat + 2
    # 6: the held-out masked-token cross-entropy went down, and ends below both a uniform guess over the codebook
    # and knowing only the token frequencies (the notebook's prose says the model has started to use the context)
    first, last, frequencies = map(float, re.search(
        r"held-out cross-entropy: ([\d.]+) at step \d+ -> ([\d.]+) at step \d+ nats/token \(token frequencies alone: "
        r"([\d.]+)", stdout(grouped["6"])).groups())
    vocab = int(re.search(r"codebook (\d+) x", text3).group(1))
    assert last < first and last < math.log(vocab) and last < frequencies
    # 7: without out/mebt.pt the samples come from the notebook's model; a whole 128-frame grid is decoded at once
    text7 = stdout(grouped["7"])
    assert "No out/mebt.pt" in text7 and "decoded 2 x 2,048 tokens" in text7


def test_notebook_writes_only_its_own_run_dir(executed):
    _, repo = executed
    assert os.path.isfile(os.path.join(repo, "runs", "tutorial", "mebt.pt"))   # its scratch run, git-ignored
    assert not os.path.exists(os.path.join(repo, "out"))                        # never writes train.py's folder


def test_committed_notebook_is_stored_with_small_outputs():
    size = os.path.getsize(NOTEBOOK)
    assert size < MAX_NOTEBOOK_BYTES, f"tutorial.ipynb is {size / 2**20:.1f} MiB"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "save the notebook executed (see tests/test_notebook.py)"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert len(pngs(code)) >= sum(MIN_PLOTS.values())
