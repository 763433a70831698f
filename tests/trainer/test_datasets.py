"""Dataset readers on small folder trees built here, and on the real COVID-19 subset."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from cxr_viewer.core.errors import TrainingError
from trainer.config import DataConfig
from trainer.datasets import (
    BINARY_CLASSES,
    MANIFEST_COLUMNS,
    class_names_for,
    covid_label,
    patient_from_filename,
    read_class_folders,
    read_covid_chestxray,
    read_csv_manifest,
    read_dataset,
    read_rsna,
)
from trainer.synth import make_phantoms, write_phantoms


def _img(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((16, 16), value, np.uint8))


def test_class_folders_with_split_dirs_and_patient_ids(tmp_path):
    root = tmp_path / "chest_xray"
    for name in ("person1_bacteria_1.jpeg", "person1_virus_7.jpeg", "person2_bacteria_3.jpeg"):
        _img(root / "train" / "PNEUMONIA" / name)
    for name in ("IM-0115-0001.jpeg", "NORMAL2-IM-0115-0002.jpeg", "IM-0200-0001.jpeg"):
        _img(root / "test" / "NORMAL" / name)
    (root / "train" / "PNEUMONIA" / "notes.txt").write_text("not an image")
    m = read_class_folders(root)
    assert list(m.columns[:5]) == MANIFEST_COLUMNS
    assert len(m) == 6 and sorted(m["label"].unique()) == ["NORMAL", "PNEUMONIA"]
    # the same person's films share a patient id; IM-0115 and NORMAL2-IM-0115 are two
    # patients (Kermany's NORMAL2 series numbers its patients separately)
    assert m["patient_id"].nunique() == 5
    assert m.set_index(m["path"].map(lambda p: p.rsplit("/", 1)[-1]))["subtype"].to_dict() == {
        "person1_bacteria_1.jpeg": "bacteria", "person1_virus_7.jpeg": "virus",
        "person2_bacteria_3.jpeg": "bacteria", "IM-0115-0001.jpeg": "",
        "NORMAL2-IM-0115-0002.jpeg": "", "IM-0200-0001.jpeg": "",
    }  # fmt: skip
    assert set(m["original_split"]) == {"train", "test"}
    assert all(p.startswith(str(root)) for p in m["path"])


def test_class_folders_without_split_dirs(tmp_path):
    for cls in ("BACTERIA", "NORMAL", "VIRUS"):
        _img(tmp_path / cls / f"{cls.lower()}_1.png")
    m = read_class_folders(tmp_path)
    assert sorted(m["label"]) == ["BACTERIA", "NORMAL", "VIRUS"]
    (tmp_path / "empty" / "NORMAL").mkdir(parents=True)
    with pytest.raises(TrainingError, match="No images"):
        read_class_folders(tmp_path / "empty")
    with pytest.raises(TrainingError, match="does not exist"):
        read_class_folders(tmp_path / "missing")


def test_patient_from_filename():
    # the ids the dataset's own labels.csv uses
    assert patient_from_filename("person1419_virus_2423.jpeg") == "P1419"
    assert patient_from_filename("NORMAL2-IM-1427-0001.jpeg") == "N2-1427"
    assert patient_from_filename("IM-0005-0001.jpeg") == "N1-0005"
    assert patient_from_filename("scan_17.png") == "scan_17"


def _pediatric_tree(root):
    names = {
        "NORMAL": ["IM-0001-0001.jpeg", "NORMAL2-IM-0001-0001.jpeg", "IM-0002-0001.jpeg"],
        "PNEUMONIA": ["person1_bacteria_1.jpeg", "person1_bacteria_2.jpeg", "person2_virus_3.jpeg"],
    }
    rows = ["filename,label,subtype,patient_id,sha256"]
    for label, files in names.items():
        for f in files:
            _img(root / "images" / label / f)
            sub = "normal" if label == "NORMAL" else f.split("_")[1]
            rows.append(f"images/{label}/{f},{label},{sub},{patient_from_filename(f)},x")
    return rows


def test_pediatric_pneumonia_labels_csv_and_folder_layouts(tmp_path):
    from trainer.config import DataConfig
    from trainer.datasets import class_names_for, read_pediatric_pneumonia

    rows = _pediatric_tree(tmp_path)
    # without labels.csv: class folders, ids from Kermany's file names
    by_folder = read_pediatric_pneumonia(tmp_path)
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    m = read_pediatric_pneumonia(tmp_path)
    assert len(m) == 6 and m["patient_id"].nunique() == 5
    assert sorted(m["patient_id"]) == sorted(by_folder["patient_id"])
    assert sorted(m["subtype"]) == sorted(by_folder["subtype"])
    assert class_names_for(m, DataConfig(format="pediatric_pneumonia")) == ["NORMAL", "PNEUMONIA"]
    three = read_pediatric_pneumonia(tmp_path, task="three_class")
    assert sorted(three["label"]) == ["bacteria"] * 2 + ["normal"] * 3 + ["virus"]
    cfg3 = DataConfig(format="pediatric_pneumonia", task="three_class")
    assert class_names_for(three, cfg3) == ["normal", "bacteria", "virus"]
    # a listed file that is missing is dropped and counted
    (tmp_path / "images" / "NORMAL" / "IM-0002-0001.jpeg").unlink()
    assert read_pediatric_pneumonia(tmp_path).attrs["missing"] == 1
    (tmp_path / "labels.csv").write_text("name,label\nx.png,NORMAL\n")
    with pytest.raises(TrainingError, match="lacks columns"):
        read_pediatric_pneumonia(tmp_path)


@pytest.mark.integration
def test_real_pediatric_pneumonia_reader():
    from cxr_viewer.core.paths import shared_data_dir

    shared = shared_data_dir()
    if shared is None or not (shared / "pediatric-pneumonia" / "labels.csv").is_file():
        pytest.skip("../shared/data/pediatric-pneumonia is not present (set CXR_SHARED_DATA)")
    from trainer.datasets import read_pediatric_pneumonia

    m = read_pediatric_pneumonia(shared / "pediatric-pneumonia")
    assert len(m) == 5098 and m["patient_id"].nunique() == 2689
    assert m["label"].value_counts().to_dict() == {"PNEUMONIA": 3737, "NORMAL": 1361}
    # the file-name rule gives the dataset's own patient ids
    names = m["path"].map(lambda p: p.rsplit("/", 1)[-1])
    assert (names.map(patient_from_filename).radd("kermany-") == m["patient_id"]).all()


def test_rsna_layout_with_phantom_dicoms(tmp_path):
    import pydicom

    phantoms = make_phantoms(3, 32, seed=1)
    write_phantoms(tmp_path / "tmp", phantoms, formats=("dicom",), photometrics=("MONOCHROME1",))
    images = tmp_path / "stage_2_train_images"
    images.mkdir()
    ids = ["aaa-1", "bbb-2", "ccc-3"]
    for i, pid in enumerate(ids):
        ds = pydicom.dcmread(tmp_path / "tmp" / "images" / f"phantom-{i:05d}_monochrome1.dcm")
        ds.ViewPosition = "AP" if i == 2 else "PA"
        ds.save_as(images / f"{pid}.dcm")
    pd.DataFrame(
        {
            "patientId": ["aaa-1", "aaa-1", "bbb-2", "ccc-3", "ddd-missing"],
            "x": [1, 5, None, None, None],
            "y": [1, 5, None, None, None],
            "width": [3, 3, None, None, None],
            "height": [3, 3, None, None, None],
            "Target": [1, 1, 0, 0, 1],
        }
    ).to_csv(tmp_path / "stage_2_train_labels.csv", index=False)
    m = read_rsna(tmp_path)
    assert list(m["patient_id"]) == ["rsna-aaa-1", "rsna-bbb-2", "rsna-ccc-3"]
    assert list(m["label"]) == ["pneumonia", "no_pneumonia", "no_pneumonia"]
    assert list(m["view"]) == ["PA", "PA", "AP"]
    assert m.attrs["missing"] == 1
    assert list(read_rsna(tmp_path, views=["PA"])["patient_id"]) == ["rsna-aaa-1", "rsna-bbb-2"]
    with pytest.raises(TrainingError, match="RSNA"):
        read_rsna(tmp_path / "stage_2_train_images")


def test_generic_csv(tmp_path):
    manifest = write_phantoms(tmp_path, make_phantoms(4, 32, seed=0), formats=("png",))
    m = read_csv_manifest(manifest)
    assert len(m) == 4 and set(m["label"]) == {"lesion", "no_lesion"}
    assert m["patient_id"].str.startswith("manifest-phantom-").all()
    assert "mask_path" in m.columns
    # without patient ids each image is its own patient; relative paths resolve to the CSV
    (tmp_path / "sub").mkdir()
    pd.DataFrame(
        {"path": ["../images/phantom-00000.png", "../nope.png"], "label": ["a", "b"]}
    ).to_csv(tmp_path / "sub" / "plain.csv", index=False)
    p = read_csv_manifest(tmp_path / "sub" / "plain.csv")
    assert len(p) == 1 and p["patient_id"].iloc[0] == "plain-phantom-00000"
    assert p.attrs["missing"] == 1
    (tmp_path / "bad.csv").write_text("file,klass\na,b\n")
    with pytest.raises(TrainingError, match="lacks the column") as err:
        read_csv_manifest(tmp_path / "bad.csv")
    assert "data.columns" in str(err.value)


def test_csv_own_column_names_and_label_map(tmp_path):
    """The issue's RSNA labels.csv shape: ``filename`` and three labels mapped to two classes."""
    write_phantoms(tmp_path, make_phantoms(3, 32, seed=0), formats=("png",))
    pd.DataFrame(
        {
            "filename": [f"images/phantom-0000{i}.png" for i in range(3)],
            "label": ["Lung Opacity", "Normal", "No Lung Opacity / Not Normal"],
            "pid": ["a", "b", "c"],
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    columns = {"path": "filename", "patient_id": "pid"}
    label_map = {
        "Lung Opacity": "lung_opacity",
        "Normal": "no_opacity",
        "No Lung Opacity / Not Normal": "no_opacity",
    }
    m = read_csv_manifest(tmp_path / "labels.csv", columns=columns, label_map=label_map)
    assert list(m["label"]) == ["lung_opacity", "no_opacity", "no_opacity"]
    assert list(m["original_label"])[0] == "Lung Opacity"
    assert list(m["patient_id"]) == ["labels-a", "labels-b", "labels-c"]
    # a header with filename but no data.columns: says how to name it, not "add a header"
    with pytest.raises(TrainingError) as err:
        read_csv_manifest(tmp_path / "labels.csv")
    assert "filename" in str(err.value) and 'path = "filename"' in str(err.value)
    assert "Add a header row" not in str(err.value)
    with pytest.raises(TrainingError, match="no column 'file'"):
        read_csv_manifest(tmp_path / "labels.csv", columns={"path": "file"})
    with pytest.raises(TrainingError, match="label_map does not name") as err:
        read_csv_manifest(tmp_path / "labels.csv", columns=columns, label_map={"Lung Opacity": "x"})
    assert "Normal" in str(err.value)


def test_covid_layout_built_here(tmp_path):
    rows = [
        ("1", "COVID-19", "PA", "X-ray", "a.png"),
        ("1", "COVID-19, ARDS", "AP Supine", "X-ray", "b.png"),
        ("2", "Pneumonia/Viral/COVID-19", "AP", "X-ray", "c.png"),
        ("3", "No Finding", "PA", "X-ray", "d.png"),
        ("4", "Streptococcus", "PA", "X-ray", "e.png"),
        ("4", "Streptococcus", "L", "X-ray", "f.png"),
        ("5", "COVID-19", "Axial", "CT", "g.png"),
        ("6", "todo", "PA", "X-ray", "h.png"),
    ]
    pd.DataFrame(rows, columns=["patientid", "finding", "view", "modality", "filename"]).assign(
        folder="images"
    ).to_csv(tmp_path / "metadata.csv", index=False)
    for r in rows:
        _img(tmp_path / "images" / r[4])
    m = read_covid_chestxray(tmp_path, task="binary")
    assert list(m["path"].str[-5:]) == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    assert list(m["label"]) == ["COVID-19"] * 3 + ["non-COVID-19"] * 2
    three = read_covid_chestxray(tmp_path, task="three_class", views=[])
    assert dict(zip(three["path"].str[-5:], three["label"], strict=True)) == {
        "a.png": "COVID-19", "b.png": "COVID-19", "c.png": "COVID-19", "d.png": "normal",
        "e.png": "other_pneumonia", "f.png": "other_pneumonia",
    }  # fmt: skip
    assert covid_label("nan", "binary") is None


def test_class_names_for(tmp_path):
    m = pd.DataFrame({"label": ["b", "a", "b"]})
    assert class_names_for(m, DataConfig(format="csv")) == ["a", "b"]
    assert class_names_for(m, DataConfig(format="csv", class_names=["b", "a"])) == ["b", "a"]
    with pytest.raises(TrainingError, match="outside"):
        class_names_for(m, DataConfig(format="csv", class_names=["a", "c"]))
    with pytest.raises(TrainingError, match="two classes"):
        class_names_for(pd.DataFrame({"label": ["a"]}), DataConfig(format="csv"))


@pytest.mark.integration
def test_real_covid_subset(shared_data):
    root = shared_data / "covid-chestxray-subset"
    m = read_covid_chestxray(root)
    meta = pd.read_csv(root / "metadata.csv")
    frontal = meta[meta["view"].isin(["PA", "AP", "AP Supine"])]
    assert len(m) == len(frontal) and m.attrs["missing"] == 0
    assert set(m["view"]) == {"PA", "AP", "AP Supine"}
    n_covid = frontal["finding"].str.contains("COVID-19").sum()
    assert (m["label"] == "COVID-19").sum() == n_covid
    assert class_names_for(m, DataConfig()) == BINARY_CLASSES
    three = read_covid_chestxray(root, task="three_class")
    assert set(three["label"]) == {"normal", "COVID-19", "other_pneumonia"}
    pa = read_dataset(DataConfig(root=str(root), views=["PA"]))
    assert set(pa["view"]) == {"PA"} and len(pa) == (meta["view"] == "PA").sum()
