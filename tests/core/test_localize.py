"""Localization scores against boxes: phantoms with known lesion boxes, baselines, CIs, the CSV
reader and the ``localize`` command on a tiny model."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.evaluate import localize as loc


def _box(x, y, w, h, *, finding="Lesion", filename="a.png", size=None, patient=""):
    iw, ih = size if size else (None, None)
    return loc.Box(filename, finding, x, y, w, h, iw, ih, patient)


# ------------------------------------------------------------------------ a map equal to the lesion
@pytest.mark.parametrize(
    "boxes",
    [
        [(40, 60, 30, 50)],
        [(10, 10, 8, 8), (150, 120, 50, 70)],  # two boxes of one finding
        [(0, 0, 224, 30)],  # along the edge
    ],
)
def test_a_map_equal_to_the_lesion_scores_one_on_every_measure(boxes):
    shape = (224, 224)
    group = [_box(*b) for b in boxes]
    mask = loc.box_mask(group, shape)
    lesion_map = mask.astype(np.float32)
    s = loc.score_map(lesion_map, mask)
    assert s.pointing_strict == 1.0
    assert s.pointing_tolerant == 1.0
    assert s.energy_inside == 1.0
    assert all(v == 1.0 for v in s.iou_by_k.values()), s.iou_by_k
    assert loc.box_agreement(lesion_map, group) == {"peak_in_box": True, "energy_inside": 1.0}


def test_a_map_outside_the_lesion_scores_zero():
    shape = (224, 224)
    mask = loc.box_mask([_box(20, 20, 40, 40)], shape)
    s = loc.score_map((~mask).astype(np.float32), mask)
    assert s.pointing_strict == 0.0 and s.energy_inside == 0.0
    assert all(v == 0.0 for v in s.iou_by_k.values())


# ------------------------------------------------------------------------------- box geometry
def test_box_mask_scales_from_the_annotated_image_to_the_grid():
    b = _box(128, 256, 64, 128, size=(512, 512))
    m = loc.box_mask([b], (224, 224))
    rows, cols = np.nonzero(m)
    assert (cols.min(), cols.max() + 1) == (56, 84)  # 128·224/512 = 56, 192·224/512 = 84
    assert (rows.min(), rows.max() + 1) == (112, 168)
    assert m.sum() == 28 * 56
    # a box smaller than a pixel still marks the pixel of its centre
    assert loc.box_mask([_box(10.2, 10.2, 0.3, 0.3)], (32, 32)).sum() == 1


def test_pointing_tolerance_is_15_px_at_224_and_scales_with_the_grid():
    assert loc.tolerance_px((224, 224)) == 15.0
    assert loc.tolerance_px((512, 512)) == pytest.approx(15.0 * 512 / 224)
    for side in (224, 448):
        shape = (side, side)
        scale = side / 224
        b = _box(100 * scale, 100 * scale, 20 * scale, 20 * scale)
        mask = loc.box_mask([b], shape)
        for gap, expected in ((10, 1.0), (14, 1.0), (17, 0.0)):
            v = np.zeros(shape, np.float32)
            # the box's last column is 120·scale − 1; the peak sits gap·scale pixels right of it
            v[int(110 * scale), int(120 * scale - 1 + gap * scale)] = 1.0
            assert loc.pointing_game(v, mask, 0.0) == 0.0
            assert loc.pointing_game(v, mask, loc.tolerance_px(shape)) == expected, (side, gap)


def test_a_flat_map_scores_the_expected_hit_of_random_tie_breaking():
    shape = (100, 100)
    mask = loc.box_mask([_box(0, 0, 50, 40)], shape)
    flat = np.ones(shape, np.float32)
    assert loc.pointing_game(flat, mask) == pytest.approx(0.2)
    assert loc.energy_inside(flat, mask) == pytest.approx(0.2)
    assert math.isnan(loc.energy_inside(np.zeros(shape), mask))  # no positive mass


# ------------------------------------------------------------------ the centre prior's geometry
@pytest.mark.parametrize(
    "box", [(92, 92, 40, 40), (20, 30, 60, 100), (150, 10, 60, 60), (0, 0, 224, 224)]
)
def test_centre_prior_energy_is_what_the_gaussian_integral_predicts(box):
    shape = (224, 224)
    b = _box(*box)
    mask = loc.box_mask([b], shape)
    got = loc.energy_inside(loc.centre_prior(shape), mask)
    expected = loc.centre_prior_energy(b.scaled(*shape), shape)
    assert got == pytest.approx(expected, abs=0.005)


def test_centre_prior_points_at_the_centre_and_its_top_k_is_a_disc():
    shape = (224, 224)
    prior = loc.centre_prior(shape)
    centred = loc.box_mask([_box(92, 92, 40, 40)], shape)
    off = loc.box_mask([_box(10, 10, 40, 40)], shape)
    assert loc.pointing_game(prior, centred) == 1.0
    assert loc.pointing_game(prior, off) == 0.0
    # top-k % of a centred isotropic Gaussian is a disc of k % of the area: inside a centred
    # 120-px box the IoU is that area over the box's
    big = loc.box_mask([_box(52, 52, 120, 120)], shape)
    for k in (5.0, 10.0, 20.0):
        disc = k / 100 * 224 * 224
        assert loc.topk_iou(prior, big, k) == pytest.approx(disc / (120 * 120), rel=0.02)


# ---------------------------------------------- maps that ignore the image vs the anatomy prior
def _population(n_images: int, seed: int):
    """Boxes where a finding usually is: right or left lower lung, with jitter, 224-px images."""
    rng = np.random.default_rng(seed)
    boxes = []
    for i in range(n_images):
        side = rng.random() < 0.65
        cx = (60 if side else 160) + rng.normal(0, 10)
        cy = 140 + rng.normal(0, 15)
        w, h = rng.uniform(30, 60), rng.uniform(40, 70)
        boxes.append(
            _box(cx - w / 2, cy - h / 2, w, h, filename=f"im{i}.png", patient=f"p{i // 2}")
        )
    return boxes


def _mean_scores(boxes, map_fn, shape=(224, 224)):
    prior = loc.AnatomyPrior(boxes)
    out = {"pointing_strict": [], "energy_inside": [], "iou": []}
    for b in boxes:
        mask = loc.box_mask([b], shape)
        v = map_fn(b, prior, mask)
        s = loc.score_map(v, mask, ks=(10.0,))
        out["pointing_strict"].append(s.pointing_strict)
        out["energy_inside"].append(s.energy_inside)
        out["iou"].append(s.iou_by_k[10.0])
    return {k: float(np.mean(v)) for k, v in out.items()}


def test_maps_that_ignore_the_image_do_not_beat_the_anatomy_prior():
    """The anatomy prior's peak is the pixel most often inside a box, so no image-blind map
    points better; its top-k region is the k % most often boxed, so none overlaps better. For
    the energy share the bound is the prior's pointing rate (a blind map's mean energy inside
    is its mass-weighted box frequency, at most the highest one), not the prior's own energy:
    a sharp blob parked at the prior's mode can beat the diffuse mean mask there."""
    shape = (224, 224)
    boxes = _population(240, seed=3)
    anatomy = _mean_scores(
        boxes, lambda b, prior, mask: prior.map_for(b.finding, b.patient_id, shape)
    )
    ceiling = {
        "pointing_strict": anatomy["pointing_strict"],
        "iou": anatomy["iou"],
        "energy_inside": anatomy["pointing_strict"],
    }
    rng = np.random.default_rng(7)
    blind_maps = {"centre": loc.centre_prior(shape)}
    yy, xx = np.mgrid[0:224, 0:224]
    for j in range(12):  # Gaussian blobs at random places, random widths
        cx, cy, s = rng.uniform(20, 204), rng.uniform(20, 204), rng.uniform(5, 60)
        blind_maps[f"blob{j}"] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    # the sharpest blind map there is: a single pixel at the prior's own mode
    mode = np.zeros(shape)
    full = loc.AnatomyPrior(boxes).map_for("Lesion", "nobody", shape)
    mode[np.unravel_index(int(np.argmax(full)), shape)] = 1.0
    blind_maps["mode"] = mode
    for name, fixed in blind_maps.items():
        got = _mean_scores(boxes, lambda b, prior, mask, f=fixed: f)
        for measure, bound in ceiling.items():
            # slack: leave-one-patient-out makes the prior a little worse than the full one
            assert got[measure] <= bound + 0.02, (name, measure, got, anatomy)
    noise = _mean_scores(
        boxes, lambda b, prior, mask: loc.uniform_random(shape, loc.seed_for(b.filename))
    )
    for measure in ("pointing_strict", "energy_inside", "iou"):
        assert noise[measure] < anatomy[measure], (measure, noise, anatomy)
    # ... while a map that looks at the image (the lesion, blurred) does beat it
    import cv2

    seeing = _mean_scores(boxes, lambda b, prior, mask: cv2.GaussianBlur(mask * 1.0, (0, 0), 6))
    for measure, bound in ceiling.items():
        assert seeing[measure] > bound + 0.1, (measure, seeing, anatomy)


def test_anatomy_prior_leaves_the_patient_out():
    shape = (64, 64)
    a = _box(0, 0, 16, 16, filename="a.png", patient="p1")
    a2 = _box(0, 0, 16, 16, filename="a2.png", patient="p1")
    b = _box(40, 40, 16, 16, filename="b.png", patient="p2")
    other = _box(0, 0, 64, 64, finding="Other", filename="c.png", patient="p3")
    prior = loc.AnatomyPrior([a, a2, b, other], grid=64)
    m = prior.map_for("Lesion", "p1", shape)
    # only p2's box remains: the prior is p2's mask, nothing of p1's own corner
    np.testing.assert_allclose(m, loc.box_mask([b], shape).astype(np.float32))
    both = prior.map_for("Lesion", "p3", shape)
    assert both[5, 5] == pytest.approx(2 / 3) and both[45, 45] == pytest.approx(1 / 3)
    assert prior.map_for("Other", "p3", shape) is None  # nobody else has it


# ---------------------------------------------------------------------------------- intervals
def test_bootstrap_cis_contain_the_truth_on_simulated_data():
    """Coverage of the 95 % CI over many simulated studies: clustered hits (patients with 1–3
    images sharing a patient effect), true mean known."""
    rng = np.random.default_rng(11)
    truth, covered, reps = 0.3, 0, 300
    for rep in range(reps):
        n_pat = 60
        p_pat = truth + rng.choice([-0.15, 0.15], n_pat)
        counts = rng.integers(1, 4, n_pat)
        pats = np.repeat(np.arange(n_pat), counts)
        values = (rng.random(pats.size) < p_pat[pats]).astype(float)
        mean, lo, hi = loc.bootstrap_ci(values, [str(p) for p in pats], n_boot=400, seed=rep)
        assert lo <= mean <= hi
        covered += lo <= truth <= hi
    assert 0.90 <= covered / reps <= 0.99, covered / reps


def test_bootstrap_ignores_nans_and_handles_empty():
    mean, lo, hi = loc.bootstrap_ci([1.0, float("nan"), 1.0])
    assert (mean, lo, hi) == (1.0, 1.0, 1.0)
    assert all(math.isnan(v) for v in loc.bootstrap_ci([float("nan")]))


def test_summary_pairs_each_method_with_the_anatomy_prior():
    rows = []
    for i in range(20):
        for method, hit in (("good", 1.0), ("anatomy_prior", float(i % 2))):
            rows.append(
                {
                    "filename": f"{i}.png",
                    "patient_id": f"p{i}",
                    "finding": "A" if i < 10 else "B",
                    "method": method,
                    "pointing_strict": hit,
                    "pointing_tolerant": hit,
                    "energy_inside": hit,
                    "iou_topk": hit,
                    "topk_percent": "10",
                }
            )
    summary = loc.summarize(rows, ["good", "anatomy_prior"], n_boot=300)
    overall = next(r for r in summary if r["finding"] == "ALL" and r["method"] == "good")
    assert overall["n"] == 20 and overall["pointing_strict"] == 1.0
    assert overall["pointing_strict_vs_anatomy_prior"] == pytest.approx(0.5)
    assert overall["pointing_strict_vs_anatomy_prior_lo"] > 0
    assert {r["finding"] for r in summary} == {"A", "B", "ALL"}


def test_choose_topk_picks_the_best_mean_and_the_smallest_on_ties():
    rows = [{5.0: 0.1, 10.0: 0.4, 20.0: 0.4}, {5.0: 0.3, 10.0: 0.2, 20.0: 0.2}]
    assert loc.choose_topk(rows, (5.0, 10.0, 20.0)) == 10.0


def test_crossfit_topk_never_uses_a_rows_own_patient():
    # half the patients (by hash) prefer k = 5, the others k = 20; each row must get the k of
    # the other half, and k on all rows is the overall best
    clusters = [f"p{i}" for i in range(40)]
    fold = [loc.seed_for(c) % 2 for c in clusters]
    rows = [{5.0: 0.5, 20.0: 0.1} if f == 0 else {5.0: 0.1, 20.0: 0.4} for f in fold]
    k_all, ks = loc.crossfit_topk(rows, clusters, (5.0, 20.0))
    assert k_all == (5.0 if fold.count(0) * 0.4 >= fold.count(1) * 0.3 else 20.0)
    assert ks == [20.0 if f == 0 else 5.0 for f in fold]
    # one patient only: no other half, the row gets the k chosen on all rows
    best = 5.0 if fold[0] == 0 else 20.0
    assert loc.crossfit_topk(rows[:1], clusters[:1], (5.0, 20.0)) == (best, [best])


# ------------------------------------------------------------------- reading and class mapping
def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


HEADER = ["filename", "finding", "x", "y", "w", "h", "image_width", "image_height", "patient_id"]


def test_read_boxes_and_clear_errors(tmp_path):
    good = _write_csv(
        tmp_path / "b.csv", HEADER, [["images/a.png", "Pneumonia", 1, 2, 3, 4, 512, 512, "7"]]
    )
    (b,) = loc.read_boxes(good)
    assert (b.filename, b.finding, b.x, b.h, b.image_width, b.patient_id) == (
        "images/a.png",
        "Pneumonia",
        1.0,
        4.0,
        512.0,
        "7",
    )
    with pytest.raises(loc.AnnotationError, match="lacks the column"):
        loc.read_boxes(_write_csv(tmp_path / "c.csv", ["filename", "x"], [["a", 1]]))
    with pytest.raises(loc.AnnotationError, match="not a number"):
        loc.read_boxes(_write_csv(tmp_path / "d.csv", HEADER[:6], [["a", "F", "x", 1, 1, 1]]))
    with pytest.raises(loc.AnnotationError, match="must be positive"):
        loc.read_boxes(_write_csv(tmp_path / "e.csv", HEADER[:6], [["a", "F", 1, 1, 0, 1]]))
    with pytest.raises(loc.AnnotationError, match="does not exist"):
        loc.read_boxes(tmp_path / "missing.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(loc.AnnotationError):
        loc.read_boxes(tmp_path / "bin.csv")


def test_boxes_for_image_by_path_then_by_name(tmp_path):
    (tmp_path / "images").mkdir()
    img = tmp_path / "images" / "a.png"
    img.write_bytes(b"")
    boxes = [_box(1, 1, 2, 2, filename="images/a.png"), _box(1, 1, 2, 2, filename="images/b.png")]
    assert loc.boxes_for_image(boxes, img, tmp_path) == boxes[:1]
    elsewhere = tmp_path / "copy" / "a.png"
    assert loc.boxes_for_image(boxes, elsewhere, tmp_path) == boxes[:1]
    assert loc.sidecar_path(img).name == "a.boxes.csv"


def test_class_mapping():
    mapping = loc.parse_class_map("Pneumonia=PNEUMONIA, Infiltrate=PNEUMONIA")
    assert mapping == {"Pneumonia": "PNEUMONIA", "Infiltrate": "PNEUMONIA"}
    got = loc.resolve_classes(
        ["Pneumonia", "Infiltrate", "Mass", "normal"], ("NORMAL", "PNEUMONIA"), mapping
    )
    assert got == {"Pneumonia": 1, "Infiltrate": 1, "normal": 0}  # by map, or by name
    with pytest.raises(CxrError, match="FINDING=CLASS"):
        loc.parse_class_map("Pneumonia")
    with pytest.raises(CxrError, match="Unknown class"):
        loc.resolve_classes(["Pneumonia"], ("NORMAL", "PNEUMONIA"), {"Pneumonia": "COVID"})


# -------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def tiny_bundle():
    pytest.importorskip("tensorflow")
    from explain_support import tiny_classifier

    return tiny_classifier().bundle.root


def test_localize_command_writes_rows_summary_report_and_montage(tmp_path, tiny_bundle):
    from cxr_viewer.cli import main

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    rows = []
    for i in range(4):
        Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(
            tmp_path / "images" / f"{i}.png"
        )
        rows.append([f"images/{i}.png", "Spot", 10 + 5 * i, 12, 20, 24, 64, 64, f"p{i}"])
    rows.append(["images/0.png", "Spot", 40, 40, 10, 10, 64, 64, "p0"])  # second box, same group
    rows.append(["images/1.png", "Elsewhere", 5, 5, 10, 10, 64, 64, "p1"])  # not mapped: left out
    rows.append(["images/missing.png", "Spot", 5, 5, 10, 10, 64, 64, "p9"])
    boxes = _write_csv(tmp_path / "boxes.csv", HEADER, rows)
    out = tmp_path / "out"
    argv = ["localize", str(boxes), "--model", str(tiny_bundle), "--out", str(out)]
    code = main([*argv, "--explain", "gradcam", "--map", "Spot=lesion", "--quiet"])
    assert code == 0
    got = list(csv.DictReader(open(out / "rows.csv", encoding="utf-8")))
    methods = ["gradcam", "centre_prior", "uniform_random", "anatomy_prior"]
    assert len(got) == 5 * len(methods)  # 5 (image, Spot) pairs × 4 maps; Elsewhere left out
    assert {r["finding"] for r in got} == {"Spot"}
    missing = [r for r in got if "missing" in r["filename"]]
    assert all(r["status"] == "error" and r["error"] for r in missing)
    ok = [r for r in got if r["status"] == "ok"]
    assert len(ok) == 4 * len(methods)
    for r in ok:
        assert r["explained_class"] == "lesion"
        for m in ("pointing_strict", "pointing_tolerant", "energy_inside", "iou_topk"):
            assert 0.0 <= float(r[m]) <= 1.0
        assert float(r["topk_percent"]) in loc.TOPK_GRID
        assert r["iou_topk"] != ""
    two_boxes = next(r for r in ok if r["filename"] == "images/0.png")
    assert two_boxes["n_boxes"] == "2"
    summary = list(csv.DictReader(open(out / "summary.csv", encoding="utf-8")))
    assert {(r["finding"], r["method"]) for r in summary} >= {("ALL", m) for m in methods}
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "anatomy_prior" in report and "montage.png" in report
    with Image.open(out / "montage.png") as im:
        assert im.width > 300 and im.height > 300

    # a mapping to a class the model lacks is a clear error, not a traceback
    assert main([*argv, "--map", "Spot=COVID", "--quiet"]) == 2
    assert main([*argv, "--limit", "2", "--topk", "7", "--map", "Spot=lesion", "--quiet"]) == 0
    got = list(csv.DictReader(open(out / "rows.csv", encoding="utf-8")))
    assert len({(r["filename"], r["finding"]) for r in got}) == 2
    ok = [r for r in got if r["status"] == "ok"]
    assert {r["topk_percent"] for r in ok} == {"7"}  # a k off the grid works too
    assert all(0.0 <= float(r["iou_topk"]) <= 1.0 for r in ok)


def test_localize_command_refuses_bad_input(tmp_path, tiny_bundle, capsys):
    from cxr_viewer.cli import main

    bad = _write_csv(tmp_path / "bad.csv", ["filename", "x"], [["a.png", 1]])
    code = main(["localize", str(bad), "--model", str(tiny_bundle), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "lacks the column" in capsys.readouterr().err
    ok = _write_csv(tmp_path / "ok.csv", HEADER, [["a.png", "Mass", 1, 1, 5, 5, 64, 64, "1"]])
    code = main(["localize", str(ok), "--model", str(tiny_bundle), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "No finding" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    ok2 = _write_csv(tmp_path / "ok2.csv", HEADER, [["a.png", "Spot", 1, 1, 5, 5, 64, 64, "1"]])
    argv = ["localize", str(ok2), "--model", str(tiny_bundle), "--map", "Spot=lesion"]
    assert main([*argv, "--out", str(tmp_path / "a-file" / "o")]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err


@pytest.mark.slow
def test_a_model_that_localizes_beats_the_anatomy_prior_on_phantoms(phantom_case):
    """The benchmark tells a localizing model from the prior: Grad-CAM of the small CNN trained
    on phantoms (its peak lands within 4 px of the lesion) against the lesions' bounding boxes,
    paired bootstrap CIs of the difference to the anatomy prior above 0."""
    from cxr_viewer.core.explain.registry import create_explainer

    case = phantom_case
    shape = case.masks.shape[1:]
    boxes = []
    for i in case.positives:
        r, c = np.nonzero(case.masks[i])
        w, h = c.max() + 1 - c.min(), r.max() + 1 - r.min()
        boxes.append(_box(c.min(), r.min(), w, h, filename=f"{i}.png", patient=f"p{i}"))
    prior = loc.AnatomyPrior(boxes, grid=shape[0])
    explainer = create_explainer("gradcam", case.classifier)
    rows = []
    for b, i in zip(boxes, case.positives, strict=True):
        mask = loc.box_mask([b], shape)
        maps = {
            "gradcam": explainer.explain(case.images[i], 1).values,
            "anatomy_prior": prior.map_for(b.finding, b.patient_id, shape),
        }
        for method, v in maps.items():
            s = loc.score_map(v, mask, (10.0,))
            rows.append(
                {
                    "filename": b.filename,
                    "patient_id": b.patient_id,
                    "finding": b.finding,
                    "method": method,
                    "pointing_strict": s.pointing_strict,
                    "pointing_tolerant": s.pointing_tolerant,
                    "energy_inside": s.energy_inside,
                    "iou_topk": s.iou_by_k[10.0],
                }
            )
    summary = loc.summarize(rows, ["gradcam", "anatomy_prior"], n_boot=1000)
    gc = next(r for r in summary if r["finding"] == "ALL" and r["method"] == "gradcam")
    anat = next(r for r in summary if r["finding"] == "ALL" and r["method"] == "anatomy_prior")
    for m in ("pointing_strict", "pointing_tolerant", "iou_topk"):
        assert gc[f"{m}_vs_anatomy_prior_lo"] > 0, (m, gc, anat)
    # energy: above what any image-blind map can reach (the prior's pointing rate)
    assert gc["energy_inside_lo"] > anat["pointing_strict"], (gc, anat)
