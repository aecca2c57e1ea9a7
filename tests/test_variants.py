"""trainlab.variants: the --vary grammar, run naming, mean ± std and the text table that
compare and sweep share."""

from __future__ import annotations

import csv
import math

import pytest

from trainlab.config import parse_overrides
from trainlab.errors import UserError
from trainlab.variants import (
    VaryError,
    combine,
    flat,
    number,
    parse_vary,
    parse_vary_items,
    pm,
    safe_name,
    stats,
    text_table,
    value_text,
    write_csv,
)

# --------------------------------------------------------------------------- the grammar


def test_comma_values_are_read_as_yaml_as_set_reads_them():
    vary = parse_vary(
        [
            "optimizer.name=sgd,momentum",
            "model.dropout=0,0.5",
            "optimizer.lr=1e-3, 3e-2",
            "model.hidden=[64,64],[128]",
            "model.norm=none",
        ]
    )
    assert vary == {
        "optimizer.name": ["sgd", "momentum"],
        "model.dropout": [0, 0.5],
        "optimizer.lr": [1e-3, 3e-2],
        "model.hidden": [[64, 64], [128]],
        "model.norm": ["none"],
    }
    assert isinstance(vary["optimizer.lr"][0], float)


def test_logspace_and_linspace_give_n_values_rounded_to_four_digits():
    vary = parse_vary(
        ["optimizer.lr=logspace(1e-4,1e-1,4)", "optimizer.momentum=linspace(0, 0.9, 4)"]
    )
    assert vary == {
        "optimizer.lr": [1e-4, 1e-3, 1e-2, 1e-1],
        "optimizer.momentum": [0.0, 0.3, 0.6, 0.9],
    }
    assert parse_vary(["optimizer.lr=logspace(1e-3,1e-1,4)"])["optimizer.lr"] == [
        0.001,
        0.004642,
        0.02154,
        0.1,
    ]


def test_a_yaml_list_is_the_list_of_values():
    assert parse_vary(["model.dropout=[0,0.3]"]) == {"model.dropout": [0, 0.3]}
    assert parse_vary(["model.hidden=[[8],[16, 16]]"]) == {"model.hidden": [[8], [16, 16]]}
    assert parse_vary(["optimizer.name=[sgd, adam]"]) == {"optimizer.name": ["sgd", "adam"]}


def test_each_value_keeps_its_text_as_written_or_as_set_text():
    items = parse_vary_items(["optimizer.lr=1e-3,1e6", "model.dropout=[0,0.3]"])
    assert items["optimizer.lr"] == [("1e-3", 1e-3), ("1e6", 1e6)]
    assert items["model.dropout"] == [("0", 0), ("0.3", 0.3)]
    spaced = parse_vary_items(["optimizer.lr=linspace(0.1,0.2,2)"])["optimizer.lr"]
    assert spaced == [("0.1", 0.1), ("0.2", 0.2)]


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("optimizer.name", "expected KEY=SPEC with a dotted KEY"),
        ("=sgd,adam", "expected KEY=SPEC"),
        ("optimizer..name=sgd", "expected KEY=SPEC"),
        ("optimizer.name=", "no value"),
        ("model.dropout=0,,0.5", "an empty value"),
        ("optimizer.name=adam,adam", "a value is repeated"),
        ("optimizer.lr=0.1,0.1", "a value is repeated"),
        ("optimizer.lr=logspace(1e-3,1e-1)", "write logspace(a,b,n)"),
        ("optimizer.lr=linspace(a,1,3)", "takes two numbers a, b"),
        ("optimizer.lr=logspace(0,1,3)", "a, b > 0"),
        ("optimizer.lr=linspace(0,1,2.5)", "integer ≥ 1"),
        ("optimizer.lr=linspace(1,1.00001,3)", "too close to tell apart"),
    ],
)
def test_a_malformed_item_is_a_user_error_naming_it(item, says):
    with pytest.raises(VaryError) as err:
        parse_vary([item])
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)
    message = str(err.value)
    assert message.startswith(f"--vary {item!r}: ") and says in message
    assert "\n" not in message


def test_a_malformed_item_says_what_is_allowed():
    with pytest.raises(VaryError, match=r"logspace\(a,b,n\) or linspace\(a,b,n\)"):
        parse_vary(["optimizer.name"])


def test_a_key_varied_twice_is_an_error():
    with pytest.raises(VaryError, match="model.dropout is already varied"):
        parse_vary(["model.dropout=0", "model.dropout=0.5"])


# --------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    "value", [0.001, 1e6, 3, True, False, None, "adam", [64, 64], {"a": 1}, "true", "null"]
)
def test_value_text_reads_back_as_the_value(value):
    assert parse_overrides([f"v={value_text(value)}"])["v"] == value


def test_value_text_of_common_values():
    assert [value_text(v) for v in (0.001, 3, True, None, "adam", [64, 64])] == [
        "0.001",
        "3",
        "true",
        "null",
        "adam",
        "[64, 64]",
    ]


def test_safe_name_is_one_path_component():
    assert safe_name("optimizer.lr=0.001+model.hidden=[64, 64]") == (
        "optimizer.lr=0.001+model.hidden=[64,_64]"
    )
    assert safe_name("a/b") == "a_b" and safe_name("") == "_"


def test_combine_is_the_product_named_by_its_overrides():
    variants = combine(parse_vary_items(["optimizer.name=sgd,adam", "model.dropout=0,0.5"]))
    assert [v.name for v in variants] == [
        "optimizer.name=sgd model.dropout=0",
        "optimizer.name=sgd model.dropout=0.5",
        "optimizer.name=adam model.dropout=0",
        "optimizer.name=adam model.dropout=0.5",
    ]
    assert variants[1].dir == "optimizer.name=sgd+model.dropout=0.5"
    assert variants[1].overrides == ["optimizer.name=sgd", "model.dropout=0.5"]
    assert variants[1].values == {"optimizer.name": "sgd", "model.dropout": 0.5}


def test_nothing_varied_is_the_config_itself():
    (only,) = combine({})
    assert (only.name, only.dir, only.overrides, only.values) == ("config", "config", [], {})


# --------------------------------------------------------------------------- statistics


def test_stats_are_the_mean_and_sample_std_of_the_numbers():
    s = stats([1.0, 2.0, None, 3.0, math.nan])
    assert s == {"mean": 2.0, "std": 1.0, "n": 3}
    assert stats([0.5]) == {"mean": 0.5, "std": None, "n": 1}
    assert stats([None]) == {"mean": None, "std": None, "n": 0}


def test_an_infinite_value_makes_the_mean_infinite_with_no_std():
    assert stats([0.1, math.inf]) == {"mean": math.inf, "std": None, "n": 2}


def test_pm_shows_mean_plus_minus_std():
    assert pm({"mean": 0.55781, "std": 0.00761}) == "0.5578 ± 0.0076"
    assert pm({"mean": 12.345, "std": None}, 3) == "12.3"
    assert pm({"mean": math.inf, "std": None}) == "inf"
    assert pm({"mean": None, "std": None}) == "—"
    assert pm(stats([1.0, 2.0, 3.0])) == "2 ± 1"


def test_number_rounds_floats_and_shows_none_as_a_dash():
    assert [number(v) for v in (0.123456, 7, None, "x")] == ["0.1235", "7", "—", "x"]


# --------------------------------------------------------------------------- output


def test_text_table_aligns_columns_under_a_rule():
    table = text_table(["variant", "runs"], [["a", "3"], ["longer", "12"]])
    assert table.splitlines() == ["variant  runs", "-------  ----", "a        3", "longer   12"]


def test_text_table_can_right_align_every_column_but_the_first():
    table = text_table(["variant", "runs"], [["a", "3"], ["longer", "12"]], right=True)
    assert table.splitlines() == [
        "variant  runs",
        "-------  ----",
        "a           3",
        "longer     12",
    ]


def test_write_csv_writes_a_header_and_rows(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["a", "b"], [[1, None], ["x,y", 0.5]])
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == [["a", "b"], ["1", ""], ["x,y", "0.5"]]


def test_flat_gives_dotted_keys_keeping_empty_dicts_and_spaces():
    tree = {
        "optimizer": {"lr": 0.1, "betas": [0.9, 0.99]},
        "extra": {},
        "tune": {"space": {"a.b": 1}},
    }
    assert flat(tree) == {
        "optimizer.lr": 0.1,
        "optimizer.betas": [0.9, 0.99],
        "extra": {},
        "tune.space": {"a.b": 1},
    }
