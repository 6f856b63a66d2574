"""notebooks/uniformity.ipynb runs top to bottom in a real Jupyter kernel; PNGs are drawn.

The notebook is executed by nbclient (an ipykernel `python3` kernel); any cell error
fails the test. It must also match its generator, `make_uniformity_notebook.py`.
"""

import importlib.util
import os
from pathlib import Path

import matplotlib.image
import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "uniformity.ipynb"
PNGS = ("fig3_item_embeddings.png", "fig4b_singular_values.png", "alignment_uniformity.png",
        "er5_ahum.png")


def _generator():
  spec = importlib.util.spec_from_file_location(
      "make_uniformity_notebook", REPO / "notebooks" / "make_uniformity_notebook.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_notebook_matches_its_generator():
  on_disk = nbformat.read(NOTEBOOK, as_version=4)
  built = _generator().build()
  assert [c.source for c in on_disk.cells] == [c.source for c in built.cells], (
      "regenerate: python notebooks/make_uniformity_notebook.py")
  assert all(not c.get("outputs") for c in on_disk.cells if c.cell_type == "code")


def test_notebook_executes_and_writes_pngs(tmp_path, monkeypatch):
  out = tmp_path / "out"
  monkeypatch.setenv("UNIFORMITY_OUT", str(out))
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO),
                                                    os.environ.get("PYTHONPATH", "")]))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}})
  client.execute()  # raises CellExecutionError on the first failing cell
  for name in PNGS:
    image = matplotlib.image.imread(out / name)
    assert image.ndim == 3 and min(image.shape[:2]) > 100, name
    assert image[..., :3].std() > 0.01, f"{name} is blank"
  text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
  assert "notebook ran in" in text

