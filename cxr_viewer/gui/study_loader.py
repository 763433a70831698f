"""Study loading: files and folders to studies on screen, off the GUI thread.

The ``io`` worker reads studies and renders full-size display images; the ``thumbs`` worker
makes study-list thumbnails. The last few studies (and their screen-size previews) are kept,
so stepping back and forth does not read the files again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QImage

from cxr_viewer.core.errors import CxrError, StudyLoadError
from cxr_viewer.core.io.formats import format_names
from cxr_viewer.core.io.study import Study, Window
from cxr_viewer.core.progress import CancelToken, ProgressFn

from .imaging import display_qimage, preview_study, render_u8, thumbnail
from .part import ViewerPart
from .worker import Failure, Task, WorkerThread

log = logging.getLogger(__name__)

#: studies (with their previews) kept in memory
STUDY_CACHE_SIZE = 4


class StudyLoader(ViewerPart):
    """Opens studies on the I/O worker and puts them into the state (GUI thread); a part of
    ``owner``, the controller, sharing its state and error reporter."""

    #: a thumbnail for the study list (path, QImage)
    thumbnailReady = Signal(object, object)
    #: a full-size display image is ready (key, QImage, (columns, rows))
    fullImageReady = Signal(object, object, object)
    #: a study could not be read (path)
    loadFailed = Signal(object)

    def __init__(
        self, owner: ViewerPart, *, io_worker: WorkerThread, thumb_worker: WorkerThread
    ) -> None:
        super().__init__(owner.state, owner.reporter, owner)
        self.io_worker = io_worker
        self.thumb_worker = thumb_worker
        #: path → (study, preview, the preview drawn with the study's own window or None)
        self._studies: OrderedDict[str, tuple[Study, Study, QImage | None]] = OrderedDict()

    def open_paths(self, paths: list[str | Path], current: str | Path | None = None) -> None:
        """Open files and folders: folders are expanded into their study files.

        The study shown is ``current`` if it is one of the files, else the first of them.
        """
        from cxr_viewer.core.io import list_study_files

        files: list[Path] = []
        for raw in paths:
            p = Path(raw)
            try:
                if p.is_dir():
                    found = list(list_study_files(p))
                    if not found:
                        raise StudyLoadError(
                            f"No images in {p.name}",
                            f"the folder holds no {format_names()} files.",
                            "Choose another folder.",
                        )
                    files.extend(Path(f) for f in found)
                elif p.exists():
                    files.append(p)
                else:
                    raise StudyLoadError(f"Cannot open {p.name}", "the file does not exist.")
            except CxrError as exc:
                self.reporter.report(exc)
        if not files:
            return
        first = self.state.add_studies(files)
        if current is not None and Path(current) in files:
            first = self.state.studies.index(Path(current))
        self._make_thumbnails(files)
        self.open_index(first, skip_unreadable=len(files) > 1)

    def open_index(self, index: int, skip_unreadable: bool = False) -> None:
        """Load study ``index`` of the list (on the I/O worker) and show it.

        With ``skip_unreadable`` (opening a folder), an unreadable file is reported and the next
        file is tried, so one bad file does not leave the viewer empty.
        """
        if not 0 <= index < len(self.state.studies):
            return
        path = self.state.studies[index]
        cached = self._studies.get(str(path))
        if cached is not None:
            self._studies.move_to_end(str(path))
            self.state.set_study(cached[0], index)
            return
        self.message.emit(f"Opening {path.name}…")

        def load(
            progress: ProgressFn, cancel: CancelToken, partial: Any
        ) -> tuple[Study, Study, QImage, QImage]:
            from cxr_viewer.core.io import load_study

            cancel.raise_if_cancelled()
            study = load_study(path)
            preview = preview_study(study)
            # the first picture (the study's own window) and the thumbnail are drawn here, so
            # the GUI thread only has to put them on screen
            first = display_qimage(render_u8(preview, None, preview.invert))
            return study, preview, first, thumbnail(preview)

        def done(result: tuple[Study, Study, QImage, QImage]) -> None:
            study, preview, first, thumb = result
            self._remember(study, preview, first)
            self.state.set_study(study, index)
            self.message.emit(f"{path.name}: {study.columns} × {study.rows}")
            self.thumbnailReady.emit(path, thumb)

        def failed(f: Failure) -> None:
            self.loadFailed.emit(path)
            self.report_failure(f"Opening {path.name} failed", f)
            if skip_unreadable and self.state.study is None and index + 1 < len(self.state.studies):
                self.open_index(index + 1, skip_unreadable=True)

        self.io_worker.submit(Task(load, "load", on_done=done, on_error=failed))

    def step(self, delta: int) -> None:
        """Open the study ``delta`` places along the list."""
        idx = self.state.step_index(delta)
        if idx is not None:
            self.open_index(idx)

    def _remember(self, study: Study, preview: Study, default_image: QImage | None = None) -> None:
        self._studies[str(study.path)] = (study, preview, default_image)
        self._studies.move_to_end(str(study.path))
        while len(self._studies) > STUDY_CACHE_SIZE:
            self._studies.popitem(last=False)

    def default_image_of(self, study: Study) -> QImage | None:
        """The preview drawn with the study's own window and inversion, if the loader made it."""
        entry = self._studies.get(str(study.path))
        return entry[2] if entry is not None and entry[0] is study else None

    def preview_of(self, study: Study) -> Study:
        """The screen-size copy of ``study`` (made now if the study did not come via open_index)."""
        entry = self._studies.get(str(study.path))
        if entry is not None and entry[0] is study:
            return entry[1]
        preview = preview_study(study)
        self._remember(study, preview)
        return preview

    def _make_thumbnails(self, files: list[Path]) -> None:
        for path in files:

            def make(
                progress: ProgressFn, cancel: CancelToken, partial: Any, path: Path = path
            ) -> tuple[Path, QImage]:
                from cxr_viewer.core.io import load_study

                cancel.raise_if_cancelled()
                return path, thumbnail(load_study(path))

            # a file that fails here fails again (with a dialog) when opened; keep the list quiet
            self.thumb_worker.submit(
                Task(
                    make,
                    f"thumb:{path}",
                    on_done=lambda r: self.thumbnailReady.emit(*r),
                    on_error=lambda f: log.info("no thumbnail: %s", f.exc),
                )
            )

    def render_full(
        self, key: tuple[Any, ...], study: Study, window: Window | None, invert: bool
    ) -> None:
        """Render the full-size display image on the I/O worker (newest request wins)."""

        def render(progress: ProgressFn, cancel: CancelToken, partial: Any) -> QImage:
            cancel.raise_if_cancelled()
            return display_qimage(render_u8(study, window, invert))

        def failed(f: Failure) -> None:
            self.report_failure("Drawing the image failed", f)

        self.io_worker.submit(
            Task(
                render,
                "render",
                on_done=lambda img: self.fullImageReady.emit(key, img, (study.columns, study.rows)),
                on_error=failed,
            )
        )
