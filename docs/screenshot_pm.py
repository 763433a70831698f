"""Screenshot of a Parametric Map written by CXR Lens, stored to Orthanc over DICOMweb,
retrieved back and shown over the film in the viewer's Explanations pane.

    QT_QPA_PLATFORM=offscreen python docs/screenshot_pm.py [--out docs/screenshot-stored-pm.png]

Starts its own Orthanc with the DICOMweb plugin on free localhost ports (the tests' helper,
temporary storage), STOW-RSes a shared chest film to it, runs ``cxr-viewer batch`` on that
film with the demo model (``--explain gradcam --dicom-out pm,sr --send URL``: the Parametric
Map and report go to Orthanc), retrieves the study with WADO-RS into a folder, opens the
film there in the main window, switches the stored map on and saves the window as PNG;
Orthanc is stopped at the end. Needs the Debian packages ``orthanc`` and
``orthanc-dicomweb``, TensorFlow, and ``../shared/data`` (or ``$CXR_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

FILM = "chest_CR_PA_MONO2_8bit_JPEGbaseline_SIIM.dcm"


def _wait(app, until, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshot-stored-pm.png"))
    args = parser.parse_args()

    import numpy as np
    import pydicom
    from orthanc_dicomweb_support import ROOT as WEB_ROOT
    from orthanc_dicomweb_support import start_orthanc_dicomweb

    from cxr_viewer.cli import main as cli
    from cxr_viewer.core.interop.dicomweb import DicomWebClient, DicomWebNode
    from cxr_viewer.core.paths import demo_bundle_dir, shared_data_dir
    from cxr_viewer.gui.app import ensure_app
    from cxr_viewer.gui.main_window import MainWindow
    from cxr_viewer.gui.settings import Settings

    data = shared_data_dir()
    if data is None:
        print("screenshot_pm: ../shared/data not found", file=sys.stderr)
        return 2
    film = data / "dicom" / FILM
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        orthanc = start_orthanc_dicomweb(tmp_path / "orthanc")
        try:
            url = orthanc.url + WEB_ROOT
            web = DicomWebClient(DicomWebNode(url))
            web.raise_if_failed(web.store([film]))
            code = cli(
                ["batch", str(film), "--model", str(demo_bundle_dir()), "--explain", "gradcam",
                 "--out", str(tmp_path / "batch"), "--dicom-out", "pm,sr", "--send", url,
                 "--device", "cpu", "--quiet"]
            )  # fmt: skip
            if code != 0:
                print("screenshot_pm: the batch run failed", file=sys.stderr)
                return 1
            study_uid = str(pydicom.dcmread(film, stop_before_pixels=True).StudyInstanceUID)
            got = web.retrieve_study(study_uid, tmp_path / "retrieved")
            kinds = sorted(
                str(pydicom.dcmread(p, stop_before_pixels=True).Modality) for p in got.files
            )
            print(f"retrieved {len(got.files)} object(s) over WADO-RS: {', '.join(kinds)}")
            film_uid = str(pydicom.dcmread(film, stop_before_pixels=True).SOPInstanceUID)
            source = next(
                p
                for p in got.files
                if str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) == film_uid
            )
            app = ensure_app()
            win = MainWindow(Settings(tmp_path / "settings.ini"))
            win.resize(1500, 900)
            win.show()
            win.open_paths([str(source)])
            _wait(app, lambda: len(win.stored_panel.boxes) > 0, 30)
            if not win.stored_panel.boxes:
                print("screenshot_pm: no stored map found beside the film", file=sys.stderr)
                return 1
            win.stored_panel.boxes[0].setChecked(True)
            win.stored_panel.sliders[0].setValue(55)
            _wait(app, lambda: win.state.prediction is not None, 60)
            for _ in range(50):
                app.processEvents()
                time.sleep(0.02)
            win.grab().save(args.out)
            (npy,) = (tmp_path / "batch").rglob("*_gradcam.npy")
            computed = np.load(npy)
            stored = win.stored_panel.overlays[0].heatmap.values
            print(
                f"wrote {args.out}: {win.stored_panel.overlays[0].label}; "
                f"stored vs computed max |diff| {float(np.abs(stored - computed).max()):.2e}"
            )
            win.close()
        finally:
            orthanc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
