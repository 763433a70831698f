"""Screenshot of the query/retrieve dialog with results from a local Orthanc.

    QT_QPA_PLATFORM=offscreen python docs/screenshot_pacs.py [--out docs/screenshot-pacs-query.png]

Starts its own Orthanc on free localhost ports (the tests' helper, temporary storage), stores
the shared chest DICOMs in it with C-STORE, searches every CR/DX study from the dialog and
saves the dialog as PNG; Orthanc is stopped at the end. Needs the Debian package ``orthanc``
and ``../shared/data`` (or ``$CXR_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

FILES = (
    "chest_CR_MONO1_J2K-lossy_RG1_J2KI.dcm",
    "chest_CR_MONO1_JPEGLS-near-lossless_RG1_JLSN.dcm",
    "chest_CR_PA_MONO2_8bit_JPEGbaseline_SIIM.dcm",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshot-pacs-query.png"))
    args = parser.parse_args()

    from orthanc_support import ORTHANC_AE, OUR_AE, start_orthanc

    from cxr_viewer.core.interop.pacs import PacsClient, PacsNode
    from cxr_viewer.core.paths import shared_data_dir
    from cxr_viewer.gui import pacs_dialogs as pd
    from cxr_viewer.gui.app import ensure_app
    from cxr_viewer.gui.network import Network
    from cxr_viewer.gui.settings import Settings
    from cxr_viewer.gui.state import ViewerState
    from cxr_viewer.gui.worker import WorkerThread

    data = shared_data_dir()
    if data is None:
        print("screenshot_pacs: ../shared/data not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        orthanc = start_orthanc(tmp_path / "orthanc")
        try:
            node = PacsNode(
                ORTHANC_AE,
                "127.0.0.1",
                orthanc.dicom_port,
                calling_ae=OUR_AE,
                name="Local Orthanc",
                storage_port=orthanc.storage_port,
            )
            PacsClient(node, log_path=tmp_path / "log").store(
                [data / "dicom" / f for f in FILES]
            ).raise_if_failed(node)
            app = ensure_app()
            settings = Settings(tmp_path / "settings.ini")
            pd.save_nodes(settings, [node])
            state = ViewerState()
            worker = WorkerThread("cxr-net")
            dlg = pd.QueryRetrieveDialog(settings, state, Network(worker))
            dlg.resize(1000, 520)
            dlg.show()
            dlg.search()
            deadline = time.monotonic() + 30
            while dlg.busy.running and time.monotonic() < deadline:
                app.processEvents()
                time.sleep(0.02)
            dlg.table.selectRow(0)
            for _ in range(20):
                app.processEvents()
            dlg.grab().save(args.out)
            print(f"wrote {args.out}: {dlg.message.text()}")
            dlg.done(0)
            worker.shutdown()
        finally:
            orthanc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
