"""Patient-level splits: no leaks (synthetic and real data), stratification, the leak check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr_viewer.core.errors import TrainingError
from trainer.datasets import read_covid_chestxray
from trainer.splits import (
    check_no_patient_leak,
    split_by_patient,
    split_summary,
    subsample_by_patient,
)


def _manifest(n_patients=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = "pos" if p % 4 == 0 else "neg"  # 25 % positive patients
        for k in range(int(rng.integers(1, 5))):
            rows.append({"path": f"/x/{p}_{k}.png", "label": label, "patient_id": f"p{p}"})
    return pd.DataFrame(rows)


def test_split_keeps_patients_together_and_is_stratified():
    m = _manifest()
    m["split"] = split_by_patient(m, val_fraction=0.15, test_fraction=0.2, seed=1)
    assert m.groupby("patient_id")["split"].nunique().max() == 1
    s = split_summary(m, ["neg", "pos"])
    for name in ("train", "val", "test"):
        assert s[name]["per_class"]["pos"] > 0 and s[name]["per_class"]["neg"] > 0
    assert 0.1 < s["test"]["patients"] / 60 < 0.3
    # seeded: same split again, different with another seed
    again = split_by_patient(m, seed=1)
    assert again.equals(m["split"])
    assert not split_by_patient(m, seed=2).equals(m["split"])


def test_leak_check_catches_a_leak():
    m = _manifest(10).assign(split="train")
    m.loc[m.index[0], "split"] = "test"  # one image of a multi-image patient moved
    pid = m.loc[m.index[0], "patient_id"]
    if (m["patient_id"] == pid).sum() > 1:
        with pytest.raises(TrainingError, match="more than one split"):
            check_no_patient_leak(m)
    check_no_patient_leak(m.assign(split="train"))


def test_too_few_patients():
    m = pd.DataFrame({"path": ["a", "b"], "label": ["x", "y"], "patient_id": ["1", "2"]})
    with pytest.raises(TrainingError, match="Too few patients"):
        split_by_patient(m)


def test_subsample_keeps_whole_patients_and_label_mix():
    m = _manifest(80)
    sub = subsample_by_patient(m, 60, seed=0)
    assert 40 <= len(sub) <= 75
    full = m[m["patient_id"].isin(sub["patient_id"])]
    assert len(full) == len(sub)  # whole patients only
    assert abs((sub["label"] == "pos").mean() - (m["label"] == "pos").mean()) < 0.15
    assert subsample_by_patient(m, 0, seed=0) is m


@pytest.mark.integration
def test_no_patient_leak_on_the_real_subset(shared_data):
    m = read_covid_chestxray(shared_data / "covid-chestxray-subset")
    assert m.groupby("patient_id").size().max() > 1  # the test means something
    for seed in (0, 42):
        m["split"] = split_by_patient(m, seed=seed)
        check_no_patient_leak(m)
        per_split = {s: set(m.loc[m["split"] == s, "patient_id"]) for s in ("train", "val", "test")}
        assert not per_split["train"] & per_split["val"]
        assert not per_split["train"] & per_split["test"]
        assert not per_split["val"] & per_split["test"]
        for s in per_split:
            assert set(m.loc[m["split"] == s, "label"]) == {"COVID-19", "non-COVID-19"}


def test_split_command(phantom_csv_small, tmp_path):
    from trainer.cli import main

    argv = ["split", "--out", str(tmp_path), "--set", "data.format=csv",
            "--set", f"data.root={phantom_csv_small}"]  # fmt: skip
    assert main(argv) == 0
    table = pd.read_csv(tmp_path / "splits.csv")
    assert len(table) == 120 and set(table["split"]) == {"train", "val", "test"}
    check_no_patient_leak(table)
    assert main(["split", "--out", str(tmp_path), "--set", "data.root=/nonexistent"]) == 1
