"""Claims about trainlab.data: built-ins, user files, splits and the tensor loader."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from trainlab.data import (
    BUILTINS,
    DataError,
    Dataset,
    Split,
    TensorLoader,
    describe,
    load,
    split,
)
from trainlab.data.builtin import _mnist1d

# --------------------------------------------------------------------------- built-ins


def test_mnist1d_is_5000_signals_of_length_40_in_10_classes_with_the_last_1000_as_test():
    ds = load("mnist1d")
    assert ds.X.shape == (5000, 40) and ds.X.dtype == torch.float32
    assert ds.y.shape == (5000,) and ds.y.dtype == torch.int64
    assert ds.task == "classification" and ds.n_classes == 10
    assert ds.classes == [str(c) for c in range(10)]
    assert ds.input_shape == (40,)
    np.testing.assert_array_equal(ds.test_indices, np.arange(4000, 5000))
    assert set(ds.y.tolist()) == set(range(10))


def test_mnist1d_generation_is_deterministic_and_leaves_the_global_rngs_alone():
    random.seed(7)
    np.random.seed(7)
    expected_py, expected_np = random.random(), np.random.random()
    random.seed(7)
    np.random.seed(7)
    fresh = _mnist1d()  # generated again, bypassing the process cache
    assert (random.random(), np.random.random()) == (expected_py, expected_np)
    cached = load("mnist1d")
    np.testing.assert_array_equal(fresh.X, cached.X.numpy())
    np.testing.assert_array_equal(fresh.y, cached.y.numpy())


@pytest.mark.parametrize(
    "name, shape, task, classes",
    [
        ("digits", (1797, 64), "classification", [str(c) for c in range(10)]),
        ("breast_cancer", (569, 30), "classification", ["malignant", "benign"]),
        ("wine", (178, 13), "classification", ["class_0", "class_1", "class_2"]),
        ("iris", (150, 4), "classification", ["setosa", "versicolor", "virginica"]),
        ("diabetes_raw", (442, 10), "regression", None),
        ("housing", (500, 4), "regression", None),
    ],
)
def test_each_table_builtin_loads_with_its_documented_shape_task_and_classes(
    name, shape, task, classes
):
    ds = load(name)
    assert ds.X.shape == shape and ds.X.dtype == torch.float32
    assert ds.task == task and ds.classes == classes
    assert ds.y.dtype == (torch.int64 if task == "classification" else torch.float32)
    assert len(ds.feature_names) == shape[1]
    assert ds.test_indices is None
    json.dumps(ds.metadata)  # JSON-serializable
    if classes:
        assert set(ds.y.tolist()) == set(range(len(classes)))


def test_digits_records_that_its_64_features_are_an_8x8_image():
    ds = load("digits")
    assert ds.metadata["image_shape"] == [8, 8]
    assert float(ds.X.min()) == 0 and float(ds.X.max()) == 16


def test_diabetes_raw_keeps_the_unscaled_features():
    age = load("diabetes_raw").X[:, 0]
    assert 19 <= float(age.min()) and float(age.max()) <= 79  # years, not standardized


def test_housing_features_sit_on_the_lecture_scales_and_follow_the_stored_linear_model():
    ds = load("housing")
    assert ds.feature_names == ["size_sqft", "bedrooms", "floors", "age_years"]
    lo, hi = ds.X.min(0).values.tolist(), ds.X.max(0).values.tolist()
    assert lo[0] >= 800 and hi[0] >= 2100  # square feet
    assert set(ds.X[:, 1].tolist()) <= {1, 2, 3, 4, 5}
    assert set(ds.X[:, 2].tolist()) == {1, 2}
    assert 5 <= lo[3] and hi[3] <= 45
    model = ds.metadata["true_model"]
    design = np.column_stack([np.ones(len(ds)), ds.X.double().numpy()])
    fit, *_ = np.linalg.lstsq(design, ds.y.double().numpy(), rcond=None)
    truth = [model["intercept"], *model["coef"].values()]
    np.testing.assert_allclose(fit, truth, atol=4.0)  # 500 samples, noise σ = 20
    np.testing.assert_allclose(fit[1], truth[1], atol=0.01)  # price per square foot


def test_changing_a_loaded_builtin_in_place_does_not_change_the_next_load():
    ds = load("iris")
    ds.X.zero_()
    ds.classes.append("x")
    again = load("iris")
    assert float(again.X.abs().sum()) > 0 and len(again.classes) == 3


def test_describe_lists_every_builtin_with_its_size_shape_and_task():
    rows = {row["name"]: row for row in describe()}
    assert list(rows) == list(BUILTINS)
    assert rows["mnist1d"]["n_samples"] == 5000 and rows["mnist1d"]["input_shape"] == (40,)
    assert rows["digits"]["n_classes"] == 10
    assert rows["housing"]["task"] == "regression" and rows["housing"]["n_classes"] is None
    assert all(row["description"] == BUILTINS[name] for name, row in rows.items())


def test_an_unknown_name_lists_the_builtins_and_suggests_the_closest():
    with pytest.raises(DataError, match="did you mean 'mnist1d'") as err:
        load("mnist_1d")
    assert all(name in str(err.value) for name in BUILTINS)


def test_a_missing_path_is_named_as_such():
    with pytest.raises(DataError, match="nowhere/data.csv: no such file or folder"):
        load("nowhere/data.csv")


def test_a_file_of_an_unsupported_type_lists_the_supported_kinds(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'.*\.csv.*\.npz.*image"):
        load(path)


def test_a_task_or_target_that_does_not_apply_to_a_builtin_is_an_error():
    with pytest.raises(DataError, match="iris is a classification dataset"):
        load("iris", task="regression")
    with pytest.raises(DataError, match="target='y' applies to CSV files only"):
        load("iris", target="y")
    with pytest.raises(DataError, match="task must be one of"):
        load("iris", task="clustering")


# --------------------------------------------------------------------------- CSV


def _csv(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_csv_with_integer_labels_is_classification_with_the_other_columns_as_features(
    tmp_path,
):
    path = _csv(tmp_path, "a,b,label\n1,2.5,3\n-4,5e1,1\n\n7,8,5\n0,0,3\n")
    ds = load(path)
    assert ds.name == str(path)
    assert ds.task == "classification"
    assert ds.feature_names == ["a", "b"]
    assert ds.classes == ["1", "3", "5"]  # sorted distinct values → labels 0..C−1
    assert ds.y.tolist() == [1, 0, 2, 1]
    torch.testing.assert_close(ds.X, torch.tensor([[1, 2.5], [-4, 50], [7, 8], [0, 0]]))
    assert ds.X.dtype == torch.float32


def test_a_csv_target_can_be_any_named_column(tmp_path):
    path = _csv(tmp_path, "a,species,b\n1,setosa,2\n3,virginica,4\n5,setosa,6\n")
    ds = load(path, target="species")
    assert ds.task == "classification" and ds.classes == ["setosa", "virginica"]
    assert ds.feature_names == ["a", "b"]
    assert ds.y.tolist() == [0, 1, 0]
    torch.testing.assert_close(ds.X, torch.tensor([[1.0, 2], [3, 4], [5, 6]]))


def test_a_csv_with_fractional_or_many_distinct_targets_is_regression(tmp_path):
    fractional = load(_csv(tmp_path, "x,y\n1,0.5\n2,1\n3,2\n", "frac.csv"))
    assert fractional.task == "regression" and fractional.classes is None
    assert fractional.y.dtype == torch.float32 and fractional.y.tolist() == [0.5, 1, 2]
    rows = "".join(f"{i},{i}\n" for i in range(51))  # 51 distinct integers > 50
    assert load(_csv(tmp_path, "x,y\n" + rows, "many.csv")).task == "regression"
    integers = load(_csv(tmp_path, "x,y\n1,1\n2,2\n", "int.csv"), task="regression")
    assert integers.task == "regression"


@pytest.mark.parametrize(
    "text, kwargs, expected",
    [
        ("a,b,y\n1,2,0\n3,x,1\n", {}, r"line 3, column 'b': 'x' is not a number"),
        ("a,b,y\n1,2,0\n3,,1\n", {}, r"line 3, column 'b': missing value"),
        ("a,b,y\n1,2,0\n3,nan,1\n", {}, r"line 3, column 'b': nan is not a finite number"),
        ("a,b,y\n1,2,0\n\n-inf,4,1\n", {}, r"line 4, column 'a': -inf is not a finite number"),
        ("a,b,y\n1,2,0\n3,1e300,1\n", {}, r"line 3, column 'b': 1e\+300 is too large"),
        ("a,b,y\n1,2,0\n3,4\n", {}, r"line 3: 2 fields, but the header has 3 columns"),
        ("a,b,y\n1,2,0\n3,4,\n", {}, r"line 3, column 'y': missing value"),
        (
            "a,b,y\n1,2,0\n3,4,1.5\n",
            {"task": "classification"},
            r"line 3, column 'y': '1.5' is not an integer class label",
        ),  # noqa: E501
        (
            "a,b,y\n1,2,0\n3,4,cat\n",
            {"task": "regression"},
            r"line 3, column 'y': 'cat' is not a number",
        ),  # noqa: E501
        (
            "a,b,y\n1,2,0\n3,4,cat\n",
            {},
            r"line 3, column 'y': 'cat' is text, but other values are numbers",
        ),  # noqa: E501
        (
            "a,b,y\n1,2,7\n3,4,7\n",
            {"task": "classification"},
            r"column 'y' holds a single class \('7'\)",
        ),  # noqa: E501
        ("a,b,y\n1,2,0\n", {"target": "z"}, r"unknown target column 'z'; the columns are: a, b, y"),  # noqa: E501
        ("", {}, r"the file is empty"),
        ("\n\n", {}, r"the file is empty"),
        ("a,b,y\n", {}, r"has a header \(line 1\) but no data rows"),
        (",a,y\n0,1,2\n", {}, r"line 1: column 1 has no name"),
        ("a,a,y\n1,2,3\n", {}, r"line 1: column name 'a' appears twice"),
        ("a;b;y\n1;2;3\n", {}, r"line 1: the header has one column.*separated by semicolons"),
    ],
    ids=[
        "non-numeric",
        "missing",
        "nan",
        "inf-after-a-blank-line",
        "float32-overflow",
        "ragged",
        "missing-target",
        "fractional-class",
        "text-regression-target",
        "text-among-numbers",
        "single-class",
        "unknown-target",
        "empty",
        "blank-lines-only",
        "header-only",
        "nameless-column",
        "repeated-column",
        "semicolons",
    ],
)
def test_every_csv_problem_is_one_line_naming_the_file_line_and_column(
    tmp_path, text, kwargs, expected
):
    path = _csv(tmp_path, text)
    with pytest.raises(DataError, match=expected) as err:
        load(path, **kwargs)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_too_many_distinct_text_labels_need_an_explicit_classification_task(tmp_path):
    path = _csv(tmp_path, "x,y\n" + "".join(f"{i},c{i}\n" for i in range(60)))
    with pytest.raises(DataError, match="60 distinct text values.*task='classification'"):
        load(path)
    assert load(path, task="classification").n_classes == 60


# --------------------------------------------------------------------------- npz


def test_an_npz_keeps_the_shape_of_x_and_reads_y_by_the_task_rule(tmp_path):
    X = np.arange(4 * 2 * 3 * 3, dtype=np.float64).reshape(4, 2, 3, 3)
    np.savez(tmp_path / "images.npz", X=X, y=np.array([2, 0, 2, 0]))
    ds = load(tmp_path / "images.npz")
    assert ds.X.shape == (4, 2, 3, 3) and ds.X.dtype == torch.float32
    assert ds.task == "classification" and ds.classes == ["0", "2"]
    assert ds.y.tolist() == [1, 0, 1, 0]

    np.savez(
        tmp_path / "table.npz",
        X=np.ones((3, 2)),
        y=np.array(["b", "a", "b"]),
        feature_names=np.array(["f", "g"]),
    )
    table = load(tmp_path / "table.npz")
    assert table.classes == ["a", "b"] and table.feature_names == ["f", "g"]
    np.savez(tmp_path / "reg.npz", X=np.ones((3, 2)), y=np.array([0.1, 0.2, 0.3]))
    assert load(tmp_path / "reg.npz").task == "regression"


def test_an_npz_without_x_or_y_names_the_file_and_the_arrays_it_holds(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, features=np.ones((3, 2)), y=np.zeros(3))
    with pytest.raises(DataError, match=r"data\.npz: missing array 'X'.*found: features, y"):
        load(path)


def test_an_npz_with_nan_in_x_names_the_element(tmp_path):
    path = tmp_path / "data.npz"
    X = np.ones((3, 2))
    X[2, 1] = np.nan
    np.savez(path, X=X, y=np.array([0, 1, 0]))
    with pytest.raises(DataError, match=r"data\.npz, X\[2, 1\]: nan is not a finite number"):
        load(path)


# --------------------------------------------------------------------------- image folders


def _image(path: Path, pixels: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), mode=mode).save(path)


def test_a_grayscale_image_folder_is_n_by_1_by_h_by_w_in_0_1_with_sorted_folders_as_classes(
    tmp_path,
):
    rng = np.random.default_rng(0)
    pixels = {f"{c}/{i}.png": rng.integers(0, 256, (5, 6)) for c in ("dog", "cat") for i in "ab"}
    for name, p in pixels.items():
        _image(tmp_path / name, p)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    ds = load(tmp_path)
    assert ds.classes == ["cat", "dog"] and ds.y.tolist() == [0, 0, 1, 1]
    assert ds.X.shape == (4, 1, 5, 6) and ds.X.dtype == torch.float32
    assert ds.metadata["files"] == ["cat/a.png", "cat/b.png", "dog/a.png", "dog/b.png"]
    for k, name in enumerate(ds.metadata["files"]):
        np.testing.assert_allclose(ds.X[k, 0].numpy(), pixels[name] / 255, atol=1e-6)


def test_one_color_image_makes_the_whole_folder_rgb(tmp_path):
    _image(tmp_path / "a" / "gray.png", np.full((4, 4), 200))
    _image(tmp_path / "b" / "red.png", np.tile([255, 0, 0], (4, 4, 1)), mode="RGB")
    ds = load(tmp_path)
    assert ds.X.shape == (2, 3, 4, 4)
    torch.testing.assert_close(ds.X[0], torch.full((3, 4, 4), 200 / 255))
    torch.testing.assert_close(ds.X[1, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_a_corrupt_image_is_named(tmp_path):
    _image(tmp_path / "a" / "ok.png", np.zeros((4, 4)))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        load(tmp_path)


def test_images_of_different_sizes_name_the_file_and_both_sizes(tmp_path):
    _image(tmp_path / "a" / "small.png", np.zeros((4, 4)))
    _image(tmp_path / "b" / "wide.png", np.zeros((4, 7)))
    with pytest.raises(DataError, match=r"wide\.png: size 7×4 differs from .*small\.png: 4×4"):
        load(tmp_path)


def test_an_image_folder_without_class_subfolders_or_images_is_an_error(tmp_path):
    with pytest.raises(DataError, match="one subfolder of images per class.*found none"):
        load(tmp_path)
    _image(tmp_path / "a" / "x.png", np.zeros((2, 2)))
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="class folder 'b' holds no images"):
        load(tmp_path)


# --------------------------------------------------------------------------- split


def _parts(s: Split) -> list[np.ndarray]:
    return [s.train, s.val, s.test]


@pytest.mark.parametrize("name", ["iris", "housing"])
def test_a_split_is_disjoint_sorted_and_covers_every_sample(name):
    ds = load(name)
    s = split(ds, val=0.2, test=0.1, seed=3)
    every = np.concatenate(_parts(s))
    np.testing.assert_array_equal(np.sort(every), np.arange(len(ds)))
    assert all(p.dtype == np.int64 and (np.diff(p) > 0).all() for p in _parts(s))
    assert (len(s.val), len(s.test)) == (round(0.2 * len(ds)), round(0.1 * len(ds)))


def test_the_same_seed_gives_the_same_split_and_another_seed_another():
    ds = load("wine")
    a, b, c = split(ds, seed=0), split(ds, seed=0), split(ds, seed=1)
    assert all(np.array_equal(p, q) for p, q in zip(_parts(a), _parts(b)))
    assert not np.array_equal(a.val, c.val)


def test_a_stratified_split_keeps_every_class_within_one_sample_of_its_proportion():
    ds = load("wine")  # classes of 59, 71 and 48 samples
    s = split(ds, val=0.15, test=0.15, seed=0)
    counts = np.bincount(ds.y.numpy())
    for part in _parts(s):
        in_part = np.bincount(ds.y.numpy()[part], minlength=3)
        assert np.all(np.abs(in_part - counts * len(part) / len(ds)) <= 1)


@given(
    counts=st.lists(st.integers(2, 40), min_size=2, max_size=6),
    val=st.floats(0.0, 0.4),
    test=st.floats(0.0, 0.4),
    seed=st.integers(0, 2**31),
)
def test_stratification_holds_for_any_class_sizes_and_fractions(counts, val, test, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    ds = Dataset(
        name="toy",
        X=torch.zeros(len(y), 1),
        y=torch.from_numpy(y),
        task="classification",
        classes=[f"c{k}" for k in range(len(counts))],
    )
    try:
        s = split(ds, val=val, test=test, seed=seed)
    except DataError as e:  # a class too small to keep a training sample: said so
        assert "too few" in str(e)
        return
    for part in _parts(s):
        in_part = np.bincount(y[part], minlength=len(counts))
        assert np.all(np.abs(in_part - np.array(counts) * len(part) / len(y)) <= 1)
    for part, fraction in ((s.val, val), (s.test, test)):  # round half up, ≥ 1 if f > 0
        assert len(part) == (max(1, math.floor(fraction * len(y) + 0.5)) if fraction else 0)
    assert len(np.concatenate(_parts(s))) == len(y)


def test_an_unstratified_split_ignores_the_classes():
    ds = load("iris")
    s = split(ds, stratify=False, seed=0)
    assert s.stratified is False
    assert split(load("housing")).stratified is False  # regression: always at random


def test_mnist1d_keeps_its_canonical_test_split_and_draws_validation_from_the_rest():
    ds = load("mnist1d")
    s = split(ds, val=0.15, test=0.3, seed=0)  # test is ignored: the canonical one is kept
    np.testing.assert_array_equal(s.test, np.arange(4000, 5000))
    assert len(s.val) == 750 and s.val.max() < 4000 and len(s.train) == 3250
    val_counts = np.bincount(ds.y.numpy()[s.val], minlength=10)
    rest_counts = np.bincount(ds.y.numpy()[:4000], minlength=10)
    assert np.all(np.abs(val_counts - rest_counts * 750 / 4000) <= 1)


def test_a_split_survives_a_round_trip_through_split_json(tmp_path):
    s = split(load("iris"), seed=5)
    s.save(tmp_path / "split.json")
    record = json.loads((tmp_path / "split.json").read_text())
    assert set(record) == {"train", "val", "test", "seed", "stratified"}
    loaded = Split.load(tmp_path / "split.json")
    assert all(np.array_equal(p, q) for p, q in zip(_parts(s), _parts(loaded)))
    assert (loaded.seed, loaded.stratified) == (5, True)
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]  # no temporary left


def test_a_split_json_with_overlapping_parts_is_rejected(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": [0, 1], "val": [1], "test": []}))
    with pytest.raises(DataError, match="split.json: the parts overlap"):
        Split.load(path)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"val": 1.0}, r"val must be a fraction in \[0, 1\), got 1.0"),
        ({"test": -0.1}, r"test must be a fraction in \[0, 1\), got -0.1"),
        ({"val": float("nan")}, r"val must be a fraction"),
        ({"val": 0.5, "test": 0.5}, r"val \+ test must be < 1"),
    ],
)
def test_an_out_of_range_fraction_names_the_parameter(kwargs, expected):
    with pytest.raises(DataError, match=expected):
        split(load("iris"), **kwargs)


def test_a_class_too_small_to_stratify_is_named():
    y = torch.tensor([0] * 20 + [1] * 20 + [2])
    ds = Dataset("toy", torch.zeros(41, 1), y, "classification", ["a", "b", "rare"])
    with pytest.raises(DataError, match="class 'rare' has a single sample"):
        split(ds)
    assert len(split(ds, stratify=False).train) > 0


# --------------------------------------------------------------------------- TensorLoader


def _loader(n: int = 23, batch_size: int = 5, **kwargs) -> TensorLoader:
    X = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)
    return TensorLoader(X, torch.arange(n), batch_size, **kwargs)


def _epoch(loader: TensorLoader) -> list[list[int]]:
    return [yb.tolist() for _, yb in loader]


def test_the_loader_yields_every_sample_once_per_epoch_with_matching_x_and_y():
    loader = _loader()
    assert len(loader) == 5
    for _ in range(2):
        batches = [(xb, yb) for xb, yb in loader]
        assert [len(yb) for _, yb in batches] == [5, 5, 5, 5, 3]
        assert sorted(torch.cat([yb for _, yb in batches]).tolist()) == list(range(23))
        assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in batches)


def test_the_order_depends_on_seed_and_epoch_only_not_on_the_global_rng():
    a, b = _loader(seed=4), _loader(seed=4)
    a.set_epoch(3)
    torch.manual_seed(0)
    first = _epoch(a)
    b.set_epoch(3)
    torch.manual_seed(1)
    assert _epoch(b) == first
    assert _epoch(a) != first  # the next epoch draws another order
    other = _loader(seed=5)
    other.set_epoch(3)
    assert _epoch(other) != first


def test_an_epoch_advances_after_a_full_pass_and_matches_set_epoch():
    loader, fresh = _loader(seed=2), _loader(seed=2)
    _epoch(loader)
    assert loader.state_dict()["epoch"] == 1
    fresh.set_epoch(1)
    assert _epoch(loader) == _epoch(fresh)


def test_without_shuffle_every_epoch_is_in_order():
    loader = _loader(shuffle=False)
    flat = [i for batch in _epoch(loader) for i in batch]
    assert flat == list(range(23)) and _epoch(loader) == _epoch(_loader(shuffle=False))


def test_drop_last_drops_the_short_final_batch():
    loader = _loader(drop_last=True)
    assert len(loader) == 4
    batches = _epoch(loader)
    assert [len(b) for b in batches] == [5, 5, 5, 5]
    assert len({i for b in batches for i in b}) == 20


def test_a_resumed_loader_yields_exactly_the_remaining_batches_of_the_epoch():
    reference = _loader(seed=9)
    reference.set_epoch(2)
    whole_epoch, next_epoch = _epoch(reference), _epoch(reference)

    interrupted = _loader(seed=9)
    interrupted.set_epoch(2)
    seen = []
    for _, yb in interrupted:
        seen.append(yb.tolist())
        if len(seen) == 2:
            state = interrupted.state_dict()  # saved inside the loop, after batch 2
            break
    assert state["epoch"] == 2 and state["position"] == 2

    resumed = _loader(seed=9)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # survives a JSON checkpoint
    resumed.set_epoch(2)  # a trainer that sets the epoch it resumes does no harm
    assert seen + _epoch(resumed) == whole_epoch
    assert _epoch(resumed) == next_epoch


def test_a_loader_refuses_a_state_saved_with_another_batch_size():
    state = _loader(batch_size=5).state_dict()
    with pytest.raises(ValueError, match="batch_size=5.*batch_size=4"):
        _loader(batch_size=4).load_state_dict(state)
