"""trainlab.figures: the one figure set-up, the one PNG writer, the report's plots."""

from __future__ import annotations

import ast
import base64
import io
import math
from pathlib import Path

from PIL import Image

from trainlab import figures
from trainlab.diagnose.lr_find import LRFinderResult

_PNG = b"\x89PNG\r\n\x1a\n"


def _decode(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return base64.b64decode(uri[len(prefix) :], validate=True)


def _drawing():
    fig, ax = figures.figure(4.0, 3.0)
    ax.plot([1, 2, 3], [3.0, 1.0, 2.0], marker="o", label="a line")
    ax.set_xlabel("epoch")
    ax.legend()
    return fig


def test_a_saved_figure_is_a_png_of_its_size_in_inches_times_the_dpi(tmp_path):
    path = figures.save(_drawing(), tmp_path / "a.png")
    assert path == tmp_path / "a.png" and path.read_bytes()[:8] == _PNG
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (4 * figures.DPI, 3 * figures.DPI)
    with Image.open(figures.save(_drawing(), tmp_path / "b.png", dpi=50)) as image:
        assert image.size == (200, 150)


def test_saving_the_same_drawing_twice_gives_the_same_bytes(tmp_path):
    first = figures.save(_drawing(), tmp_path / "first.png").read_bytes()
    second = figures.save(_drawing(), tmp_path / "second.png").read_bytes()
    assert first == second
    assert b"Software" not in first and b"matplotlib version" not in first


def test_save_makes_the_missing_folders(tmp_path):
    path = figures.save(_drawing(), tmp_path / "a" / "b" / "c.png")
    assert path.is_file()


def test_encode_is_the_data_uri_of_the_saved_png(tmp_path):
    saved = figures.save(_drawing(), tmp_path / "a.png").read_bytes()
    assert _decode(figures.encode(_drawing())) == saved
    assert figures.png_uri(saved) == figures.encode(_drawing())


def test_figure_gives_one_axes_for_one_cell_and_an_array_for_a_grid():
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig, ax = figures.figure()
    assert isinstance(ax, Axes) and isinstance(fig.canvas, FigureCanvasAgg)
    assert tuple(fig.get_size_inches()) == (6.4, 3.6)
    assert fig.get_layout_engine() is not None  # constrained: labels are never cut off
    _, row = figures.figure(ncols=2)
    assert row.shape == (2,)
    _, grid = figures.figure(ncols=3, nrows=2)
    assert grid.shape == (2, 3)


def test_figures_imports_only_the_atomic_writer_from_trainlab():
    tree = ast.parse(Path(figures.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0
            assert (
                not (node.module or "").startswith("trainlab") or node.module == "trainlab.atomic"
            )
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("trainlab") for a in node.names)


def test_the_lr_finder_file_and_the_reports_figure_are_the_same_drawing(tmp_path):
    result = LRFinderResult(
        lrs=[1e-4 * 10 ** (k / 4) for k in range(16)],
        losses=[2.3 - 0.1 * k + (0.05 if k % 2 else 0.0) for k in range(15)] + [float("nan")],
        smoothed=[2.3 - 0.1 * k for k in range(15)] + [float("inf")],
        suggestion=3e-3,
        rule="valley",
        message="valley: the middle of the longest descent",
        stopped_early=True,
    )
    written = result.plot(tmp_path / "lr_find.png").read_bytes()
    embedded = _decode(figures.lr_find_figure(**result.to_dict()))  # from lr_find.json
    assert written == embedded


def test_an_lr_finder_without_a_positive_learning_rate_has_no_figure():
    assert figures.lr_find_figure([], [], [], None) is None
    assert figures.lr_find_figure([0.0, float("nan")], [1.0, 1.0], [1.0, 1.0], None) is None


def test_curves_figure_draws_what_was_logged_and_nothing_otherwise():
    history = [
        {"epoch": 1, "train_loss": 1.0, "val_loss": 1.2},
        {"epoch": 2, "train_loss": math.nan, "val_loss": math.inf},  # gaps, not an error
        {"epoch": 3, "train_loss": 0.5, "val_loss": 0.7},
    ]
    uri = figures.curves_figure(history, "loss", best_epoch=3)
    with Image.open(io.BytesIO(_decode(uri))) as image:
        assert image.size == (640, 360)
    assert figures.curves_figure(history, "accuracy") is None


def test_a_loss_axis_is_logarithmic_beyond_two_decades():
    assert figures.spans_decades([10.0, 1.0, 0.01, math.nan, 0.0])
    assert not figures.spans_decades([10.0, 1.0, 0.2])
    assert not figures.spans_decades([math.nan, -1.0])


def test_the_importances_figure_grows_with_the_number_of_parameters():
    def height(n: int) -> int:
        uri = figures.importances_figure({f"p{i}": 1 / (i + 1) for i in range(n)})
        with Image.open(io.BytesIO(_decode(uri))) as image:
            return image.height

    assert height(8) > height(2)
    assert figures.importances_figure({}) is None


def test_no_trials_no_trials_figure():
    assert figures.trials_figure([], maximize=True, metric="val_accuracy") is None


def test_the_trials_figure_draws_every_state():
    rows = [
        {"number": "0", "state": "COMPLETE", "value": "0.7", "default": "True"},
        {"number": "1", "state": "PRUNED", "value": ""},
        {"number": "2", "state": "FAIL", "value": ""},
        {"number": "3", "state": "COMPLETE", "value": "0.8", "default": "False"},
    ]
    assert _decode(figures.trials_figure(rows, True, "val_accuracy"))[:8] == _PNG
