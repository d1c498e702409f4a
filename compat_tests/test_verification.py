"""caffe.verification: the per-blob comparison every converter prints."""
import numpy as np
import torch

from caffe.verification import compare_named, diff_arrays, format_table, verdict, worst


def test_identical_arrays_pass_with_cosine_one():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    row = diff_arrays("x", a, torch.from_numpy(a.copy()))
    assert row.max_abs == 0 and row.max_rel == 0 and abs(row.cosine - 1) < 1e-12
    assert row.within(1e-6)


def test_relative_error_is_against_the_reference_scale():
    ref = np.array([0.0, 0.0, 100.0])
    row = diff_arrays("relu", ref, ref + np.array([1e-3, 0, 0]))
    assert abs(row.max_rel - 1e-5) < 1e-12
    assert row.within(1e-4) and not row.within(1e-6)


def test_missing_and_mis_shaped_blobs_fail():
    rows = compare_named({"a": np.zeros(3), "b": np.ones((2, 2))}, {"b": np.ones(5)})
    assert [r.note for r in rows] == ["missing", "shape (2, 2) vs (5,)"]
    assert not verdict(rows, rtol=1.0)
    assert worst(rows)["failed"] == ["a", "b"]


def test_same_count_different_layout_is_compared_flat():
    ref = np.arange(6.0).reshape(2, 3)
    assert diff_arrays("flat", ref, ref.reshape(6)).max_abs == 0


def test_nan_in_candidate_fails():
    row = diff_arrays("n", np.ones(3), np.array([1.0, np.nan, 1.0]))
    assert not row.within(1.0)


def test_table_lists_every_row_and_verdict_can_be_restricted():
    rows = compare_named({"a": np.ones(2), "b": np.ones(2)}, {"a": np.ones(2), "b": np.zeros(2)})
    text = format_table(rows, title="check")
    assert text.splitlines()[0] == "check"
    assert "max rel" in text and "\na " in text and "\nb " in text
    assert verdict(rows, 1e-4, names=["a"]) and not verdict(rows, 1e-4)
