"""Dataset readers: each public layout becomes one manifest.

A manifest is a :class:`pandas.DataFrame` with at least the columns :data:`MANIFEST_COLUMNS`
(``path`` absolute, ``label`` a class name, ``patient_id`` prefixed with the source so ids of two
datasets never collide, ``view``, ``source``); readers may add columns (``finding``,
``original_split``, ``mask_path``). Rows whose image file is missing are dropped, counted in
``manifest.attrs["missing"]`` and listed in ``manifest.attrs["missing_files"]``. Images themselves are read later, through
:func:`cxr_viewer.core.io.load_study`, by :mod:`trainer.cache`.

Layouts
-------
* ``covid_chestxray`` — the COVID-19 chest X-ray dataset (Cohen et al. 2020,
  arXiv:2006.11988): ``metadata.csv`` (patientid, finding, view, modality, folder, filename, …)
  and ``images/``. X-ray rows only, filtered by view; findings mapped to the binary task
  (non-COVID-19 / COVID-19) or the three-class task (normal / COVID-19 / other_pneumonia).
* ``class_folders`` — one folder per class, optionally under ``train|val|test`` (e.g. the
  pediatric pneumonia set of Kermany et al. 2018: ``NORMAL|PNEUMONIA`` or
  ``BACTERIA|NORMAL|VIRUS``). Patient ids come from file names where the set encodes them
  (``person123_bacteria_4.jpeg``, ``IM-0115-0001.jpeg``), else each file is its own patient.
* ``pediatric_pneumonia`` — the paediatric pneumonia set of Kermany et al. 2018 (Cell;
  Mendeley Data doi:10.17632/rscbjbr9sj.2, CC BY 4.0) as a ``labels.csv`` (filename, label
  NORMAL/PNEUMONIA, subtype normal/bacteria/virus, patient_id) next to ``images/``. Task
  ``binary``: NORMAL / PNEUMONIA; ``three_class``: normal / bacteria / virus. Without a
  ``labels.csv`` the folder is read as ``class_folders`` (patient ids from Kermany's file names).
* ``rsna`` — RSNA Pneumonia Detection Challenge: ``stage_2_train_labels.csv`` (patientId,
  x, y, width, height, Target; one row per box) + ``stage_2_train_images/<patientId>.dcm``.
* ``csv`` — a generic CSV with ``path`` and ``label`` (optional ``patient_id``, ``view``,
  ``source``); relative paths are relative to the CSV's folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from cxr_viewer.core.errors import TrainingError
from cxr_viewer.core.io.formats import image_suffixes

from .config import DataConfig, resolve_path

MANIFEST_COLUMNS = ["path", "label", "patient_id", "view", "source"]

COVID = "COVID-19"
BINARY_CLASSES = ["non-COVID-19", COVID]
THREE_CLASSES = ["normal", COVID, "other_pneumonia"]
PEDIATRIC_BINARY = ["NORMAL", "PNEUMONIA"]
PEDIATRIC_THREE = ["normal", "bacteria", "virus"]
#: findings that are no label at all
_UNLABELLED = {"", "todo", "unknown", "nan"}


def _finish(df: pd.DataFrame, source: str, what: str) -> pd.DataFrame:
    """Drop rows whose file is missing, check the result is usable, fix column order."""
    exists = df["path"].map(lambda p: Path(p).is_file())
    missing = int((~exists).sum())
    missing_files = df.loc[~exists, "path"].astype(str).tolist()
    df = df[exists].reset_index(drop=True)
    if df.empty:
        raise TrainingError(
            f"No usable images in {source}",
            f"{what} ({missing} listed files are missing).",
            "Check data.root and data.format (and data.views for the COVID-19 dataset).",
        )
    for col in MANIFEST_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    df["label"] = df["label"].astype(str)
    df["patient_id"] = df["patient_id"].astype(str)
    df["view"] = df["view"].fillna("").astype(str)
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    df = df[MANIFEST_COLUMNS + extra]
    df.attrs["missing"] = missing
    df.attrs["missing_files"] = missing_files
    return df


def covid_label(finding: str, task: str) -> str | None:
    """Map a covid-chestxray ``finding`` to a class (None: drop the row).

    Handles both the flat findings of early releases ("COVID-19, ARDS", "No Finding",
    "Streptococcus") and the hierarchical ones of later releases ("Pneumonia/Viral/COVID-19").
    """
    text = str(finding).strip()
    if text.lower() in _UNLABELLED:
        return None
    is_covid = "covid-19" in text.lower() or "sars-cov-2" in text.lower()
    if task == "binary":
        return COVID if is_covid else BINARY_CLASSES[0]
    if is_covid:
        return COVID
    if text.lower() in ("no finding", "normal"):
        return "normal"
    return "other_pneumonia"


def read_covid_chestxray(
    root: str | Path, *, task: str = "binary", views: Iterable[str] = ("PA", "AP", "AP Supine")
) -> pd.DataFrame:
    """Manifest of the COVID-19 chest X-ray dataset layout (see module docstring)."""
    root = Path(root)
    meta_path = root / "metadata.csv"
    if not meta_path.is_file():
        raise TrainingError(
            f"{root} is not in the COVID-19 chest X-ray dataset layout",
            "it has no metadata.csv.",
            "Point data.root at the dataset folder (metadata.csv + images/).",
        )
    meta = pd.read_csv(meta_path, dtype=str, keep_default_na=False)
    needed = {"patientid", "finding", "view", "filename"}
    if not needed <= set(meta.columns):
        raise TrainingError(
            f"{meta_path} lacks columns the reader needs",
            f"needs {sorted(needed)}, has {sorted(meta.columns)[:12]}….",
        )
    if "modality" in meta.columns:
        meta = meta[meta["modality"].str.strip().str.lower().isin(["x-ray", "xray", ""])]
    views = [v.strip().lower() for v in views]
    if views:
        meta = meta[meta["view"].str.strip().str.lower().isin(views)]
    labels = meta["finding"].map(lambda f: covid_label(f, task))
    meta = meta[labels.notna()]
    labels = labels[labels.notna()]
    folder = meta["folder"] if "folder" in meta.columns else pd.Series("images", index=meta.index)
    folder = folder.replace("", "images")
    df = pd.DataFrame(
        {
            "path": [
                str((root / f / n).resolve()) for f, n in zip(folder, meta["filename"], strict=True)
            ],
            "label": labels.values,
            "patient_id": ("covid-" + meta["patientid"].str.strip()).values,
            "view": meta["view"].str.strip().values,
            "source": "covid-chestxray",
            "finding": meta["finding"].values,
        }
    )
    return _finish(df, str(root), f"{len(df)} rows after the view filter {list(views)}")


_PATIENT_PATTERNS = (
    # Kermany et al.: person1_bacteria_1 → P1; IM-0115-0001 → N1-0115; NORMAL2-IM-1427-0001 →
    # N2-1427 (the NORMAL2 series numbers its patients separately from the IM- series)
    (re.compile(r"^person(\d+)_", re.IGNORECASE), "P{}"),
    (re.compile(r"^NORMAL2-IM-(\d+)-", re.IGNORECASE), "N2-{}"),
    (re.compile(r"^IM-(\d+)-", re.IGNORECASE), "N1-{}"),
)
_SUBTYPE_PATTERN = re.compile(r"_(bacteria|virus)_", re.IGNORECASE)


def patient_from_filename(name: str) -> str:
    """Patient id encoded in a file name (Kermany's conventions, the ids the dataset's
    ``labels.csv`` uses), else the stem (each file its own patient)."""
    for pattern, template in _PATIENT_PATTERNS:
        m = pattern.match(name)
        if m:
            return template.format(m.group(1))
    return Path(name).stem


def subtype_from_filename(name: str) -> str:
    """``bacteria`` / ``virus`` from a Kermany pneumonia file name, else ``""``."""
    m = _SUBTYPE_PATTERN.search(name)
    return m.group(1).lower() if m else ""


def read_class_folders(root: str | Path) -> pd.DataFrame:
    """Manifest of a class-per-folder layout, with or without ``train|val|test`` folders.

    Image files are those with a suffix of a format the viewer reads
    (:func:`cxr_viewer.core.io.formats.image_suffixes`), so the trainer accepts what it can load.
    """
    root = Path(root)
    suffixes = image_suffixes()
    if not root.is_dir():
        raise TrainingError(
            f"No dataset folder at {root}", "the folder does not exist", "Check data.root."
        )
    split_names = {"train", "val", "test", "valid", "validation"}
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs and all(p.name.lower() in split_names for p in subdirs):
        class_dirs = [(s.name, c) for s in subdirs for c in sorted(s.iterdir()) if c.is_dir()]
    else:
        class_dirs = [("", c) for c in subdirs]
    rows = []
    for original_split, cdir in class_dirs:
        for f in sorted(cdir.iterdir()):
            if f.is_file() and f.suffix.lower() in suffixes and not f.name.startswith("."):
                rows.append(
                    {
                        "path": str(f.resolve()),
                        "label": cdir.name,
                        "patient_id": f"{root.name}-{patient_from_filename(f.name)}",
                        "view": "",
                        "source": f"class_folders:{root.name}",
                        "original_split": original_split,
                        "subtype": subtype_from_filename(f.name),
                    }
                )
    if not rows:
        raise TrainingError(
            f"No images found in class folders under {root}",
            "expected <root>/<class>/*.png|jpg|dcm or <root>/train|val|test/<class>/*.",
            "Check data.root and data.format.",
        )
    return _finish(pd.DataFrame(rows), str(root), "no image files")


def read_pediatric_pneumonia(root: str | Path, *, task: str = "binary") -> pd.DataFrame:
    """Manifest of the paediatric pneumonia set (see module docstring).

    Reads ``labels.csv`` when present (patient ids and subtypes as the dataset states them),
    else the class-folder layout with Kermany's file-name patient ids. ``subtype`` is kept as a
    column (per-subtype sensitivity in the report); ``task = "three_class"`` uses it as label.
    """
    root = Path(root)
    labels_csv = root / "labels.csv"
    if labels_csv.is_file():
        try:
            table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise TrainingError(f"Cannot read {labels_csv} as CSV", str(exc)) from exc
        needed = {"filename", "label", "patient_id"}
        if not needed <= set(table.columns):
            raise TrainingError(
                f"{labels_csv} lacks columns the reader needs",
                f"needs {sorted(needed)}, has {sorted(table.columns)}.",
                "Use the dataset's own labels.csv (filename,label,subtype,patient_id).",
            )
        if "subtype" not in table.columns:
            table["subtype"] = table["filename"].map(lambda f: subtype_from_filename(Path(f).name))
        df = pd.DataFrame(
            {
                "path": [str((root / f).resolve()) for f in table["filename"]],
                "label": table["label"].str.strip().str.upper().values,
                "patient_id": ("kermany-" + table["patient_id"].str.strip()).values,
                "view": "AP",
                "source": "pediatric-pneumonia",
                "subtype": table["subtype"].str.strip().str.lower().values,
            }
        )
    else:
        folders = root / "images" if (root / "images").is_dir() else root
        df = read_class_folders(folders)
        df["label"] = df["label"].str.upper()
        df["patient_id"] = "kermany-" + df["path"].map(
            lambda p: patient_from_filename(Path(p).name)
        )
        df["source"] = "pediatric-pneumonia"
        df["view"] = "AP"
        df.loc[df["label"] == "NORMAL", "subtype"] = "normal"
    bad = sorted(set(df["label"]) - set(PEDIATRIC_BINARY))
    if bad:
        raise TrainingError(
            f"{root}: labels outside NORMAL/PNEUMONIA",
            f"found {bad[:5]}.",
            "Point data.root at the paediatric pneumonia folder (labels.csv + images/).",
        )
    if task == "three_class":
        unknown = df["subtype"].isin(PEDIATRIC_THREE) == False  # noqa: E712
        if unknown.any():
            raise TrainingError(
                "The three-class task needs a subtype for every image",
                f"{int(unknown.sum())} images have none of {PEDIATRIC_THREE}.",
                'Use labels.csv with its subtype column, or data.task = "binary".',
            )
        df["label"] = df["subtype"]
    return _finish(df, str(root), f"{len(df)} labelled images")


def _dicom_view(path: str) -> str:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["ViewPosition"])
        return str(ds.get("ViewPosition", "") or "")
    except (OSError, pydicom.errors.InvalidDicomError):
        return ""


def read_rsna(root: str | Path, *, views: Iterable[str] = (), workers: int = 2) -> pd.DataFrame:
    """Manifest of the RSNA Pneumonia Detection Challenge layout.

    One image per ``patientId`` (the challenge's id is per study); label ``pneumonia`` if any of
    its rows has ``Target`` 1, else ``no_pneumonia``. The view comes from each DICOM's
    ViewPosition (read without pixel data) and is filtered by ``views`` when given.
    """
    root = Path(root)
    labels_csv = next(
        (root / n for n in ("stage_2_train_labels.csv", "stage_1_train_labels.csv")
         if (root / n).is_file()),
        None,
    )  # fmt: skip
    if labels_csv is None:
        raise TrainingError(
            f"{root} is not in the RSNA pneumonia layout",
            "it has no stage_2_train_labels.csv.",
            "Point data.root at the folder holding the labels CSV and stage_2_train_images/.",
        )
    table = pd.read_csv(labels_csv)
    if not {"patientId", "Target"} <= set(table.columns):
        raise TrainingError(f"{labels_csv.name} lacks patientId/Target columns")
    target = table.groupby("patientId", sort=True)["Target"].max()
    image_dir = next(
        (root / n for n in ("stage_2_train_images", "stage_1_train_images") if (root / n).is_dir()),
        root,
    )
    paths = [str((image_dir / f"{pid}.dcm").resolve()) for pid in target.index]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        view_list = list(pool.map(_dicom_view, paths))
    df = pd.DataFrame(
        {
            "path": paths,
            "label": ["pneumonia" if t else "no_pneumonia" for t in target.values],
            "patient_id": [f"rsna-{p}" for p in target.index],
            "view": view_list,
            "source": "rsna-pneumonia",
        }
    )
    wanted = [v.strip().upper() for v in views]
    if wanted:
        df = df[df["view"].str.upper().isin(wanted)]
    return _finish(df, str(root), f"{len(df)} images after the view filter {wanted}")


def read_csv_manifest(csv_path: str | Path) -> pd.DataFrame:
    """Manifest from a generic CSV (``path``, ``label``; optional ``patient_id``, ``view``,
    ``source``). Without ``patient_id`` each image counts as its own patient."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise TrainingError(
            f"No CSV file at {csv_path}", "the file does not exist", "Check data.root."
        )
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise TrainingError(f"Cannot read {csv_path.name} as CSV", str(exc)) from exc
    if not {"path", "label"} <= set(df.columns):
        raise TrainingError(
            f"{csv_path.name} lacks the columns path and label",
            f"it has {list(df.columns)}.",
            "Add a header row: path,label[,patient_id,view,source].",
        )
    base = csv_path.parent
    df = df.copy()
    df["path"] = [str((base / p).resolve()) for p in df["path"]]
    if "patient_id" not in df.columns or (df["patient_id"] == "").any():
        fallback = df["path"].map(lambda p: Path(p).stem)
        pid = df["patient_id"] if "patient_id" in df.columns else fallback
        df["patient_id"] = pid.where(pid != "", fallback)
    df["patient_id"] = f"{csv_path.stem}-" + df["patient_id"]
    if "source" not in df.columns:
        df["source"] = f"csv:{csv_path.name}"
    df = df[df["label"].str.strip() != ""]
    return _finish(df, str(csv_path), f"{len(df)} labelled rows")


def read_dataset(data: DataConfig) -> pd.DataFrame:
    """The manifest for a ``[data]`` config section."""
    root = resolve_path(data.root)
    if data.format == "covid_chestxray":
        return read_covid_chestxray(root, task=data.task, views=data.views)
    if data.format == "class_folders":
        return read_class_folders(root)
    if data.format == "pediatric_pneumonia":
        return read_pediatric_pneumonia(root, task=data.task)
    if data.format == "rsna":
        return read_rsna(root, views=data.views, workers=data.workers)
    if data.format == "csv":
        return read_csv_manifest(root)
    raise TrainingError(f"Unknown data.format '{data.format}'")


def finding_sets(labels) -> list[set[str]]:
    """Multi-label manifest labels ("a|b", "no_finding") as sets of findings."""
    from .config import NO_FINDING_LABELS

    out = []
    for text in labels:
        parts = {p.strip() for p in str(text).split("|")} - set(NO_FINDING_LABELS)
        out.append(parts)
    return out


def finding_names_for(manifest: pd.DataFrame, data: DataConfig) -> list[str]:
    """Multi-label output order: ``data.class_names`` if set, else the sorted findings."""
    present = sorted(set().union(*finding_sets(manifest["label"])))
    return _checked_names(
        list(data.class_names) or present, present, "findings", "A multi-label model",
        'Label images with their findings joined by "|" (e.g. "nodule|effusion").',
    )  # fmt: skip


def _checked_names(
    names: list[str], present: list[str], what: str, model: str, hint: str
) -> list[str]:
    """``names`` if every present label is among them and each has images, else an error."""
    unknown = sorted(set(present) - set(names))
    if unknown:
        raise TrainingError(
            f"The data has {what} outside data.class_names",
            f"{what} {unknown} are not in {names}.",
            "Add them to data.class_names or leave it empty.",
        )
    empty = [n for n in names if n not in present]
    if empty or len(names) < 2:
        raise TrainingError(
            f"{model} needs at least two {what} with images",
            f"{what} without images: {empty}; {what}: {names}.",
            hint,
        )
    return names


def class_names_for(manifest: pd.DataFrame, data: DataConfig) -> list[str]:
    """Class order: ``data.class_names`` if set, the task's order for the COVID-19 dataset,
    else sorted labels. Raises if a manifest label is not among them or a class is empty."""
    present = sorted(manifest["label"].unique())
    if data.class_names:
        names = list(data.class_names)
    elif data.format == "covid_chestxray":
        names = BINARY_CLASSES if data.task == "binary" else THREE_CLASSES
    elif data.format == "pediatric_pneumonia":
        names = PEDIATRIC_BINARY if data.task == "binary" else PEDIATRIC_THREE
    else:
        names = present
    return _checked_names(
        names, present, "classes", "A classifier",
        "Check the data filter (views, task) or data.class_names.",
    )  # fmt: skip
