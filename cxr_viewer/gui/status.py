"""The status bar: messages, window/level, pixel under the pointer, progress + Cancel, device.

The device label says where the model runs and, on a GPU, the memory TensorFlow holds there
(polled every few seconds); the "Device" button next to it chooses auto / CPU / GPU N for the
next start (TensorFlow cannot move to another device once it runs).

Texts that can be long (messages, what the background work is doing) are elided with the whole
text in their tooltip, so they never widen the window; a badge says when patient data is hidden.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import (
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStatusBar,
    QToolButton,
    QWidget,
)

from cxr_viewer.core.model import model_io
from cxr_viewer.core.model.model_card import model_title

from .panels.base import ElidedLabel
from .state import METHODS, ViewerState
from .theme import icon

GPU_MEMORY_POLL_MS = 3000
#: widths (px) the model's name and the device text take at most before they are elided
MODEL_LABEL_WIDTH, DEVICE_LABEL_WIDTH = 420, 330


class StatusArea(QStatusBar):
    """Shows background work (newest first) with one Cancel button for explanations."""

    cancelRequested = Signal()

    def __init__(self, state: ViewerState, parent: QWidget | None = None, settings=None) -> None:
        super().__init__(parent)
        self.state = state
        self.settings = settings
        self.msg = ElidedLabel("")
        self.addWidget(self.msg, 1)
        self.pixel = QLabel("")
        self.addPermanentWidget(self.pixel)
        self.window_label = QLabel("")
        self.addPermanentWidget(self.window_label)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFixedWidth(120)
        self.progress.setTextVisible(False)
        self.progress.setVisible(False)
        self.work_label = ElidedLabel("")
        self.work_label.setFixedWidth(230)
        self.work_label.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        self.work_label.setVisible(False)
        self.addPermanentWidget(self.work_label)
        self.addPermanentWidget(self.progress)
        self.cancel_button = QPushButton(icon("cancel"), "Cancel")
        self.cancel_button.setToolTip("Stop the running explanations (Esc)")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancelRequested.emit)
        self.addPermanentWidget(self.cancel_button)
        # the model's name and where it runs can be long: elided (whole text in the tooltip)
        # so the window's minimum width does not grow with them
        self.model_label = ElidedLabel("", preferred_width=MODEL_LABEL_WIDTH)
        self.model_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.addPermanentWidget(self.model_label, 1)
        self.device_label = ElidedLabel("", preferred_width=DEVICE_LABEL_WIDTH)
        self.device_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.device_label.setObjectName("Device")
        self.addPermanentWidget(self.device_label)
        self.device_button = QToolButton()
        self.device_button.setText("Device")
        self.device_button.setToolTip(
            "Where the model runs: auto (first GPU, else CPU), CPU, GPU N"
        )
        self.device_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.device_button.setMenu(QMenu(self.device_button))
        self.device_button.menu().aboutToShow.connect(self._fill_device_menu)
        self.device_button.setVisible(settings is not None)
        self.addPermanentWidget(self.device_button)
        self._gpu_timer = QTimer(self)
        self._gpu_timer.timeout.connect(self._show_device)
        self.privacy_badge = QLabel("Patient data hidden")
        self.privacy_badge.setObjectName("PrivacyBadge")
        self.privacy_badge.setToolTip("Patient fields are masked on screen and in exports (H)")
        self.addPermanentWidget(self.privacy_badge)
        self.privacy_badge.setVisible(state.hide_patient)
        state.events.privacy.connect(lambda: self.privacy_badge.setVisible(self.state.hide_patient))
        self._work: dict[str, tuple[float, str]] = {}
        self._clear = QTimer(self)
        self._clear.setSingleShot(True)
        self._clear.timeout.connect(lambda: self.msg.setText(""))
        state.events.model.connect(self._model_changed)
        state.events.display.connect(self._window_changed)
        self._model_changed()

    def show_message(self, text: str, timeout_ms: int = 6000) -> None:
        self.msg.setText(text)
        if timeout_ms:
            self._clear.start(timeout_ms)

    def on_busy(self, kind: str, fraction: float, message: str) -> None:
        """A worker's progress (fraction < 0: that work ended)."""
        if fraction < 0:
            self._work.pop(kind, None)
        else:
            self._work.pop(kind, None)
            self._work[kind] = (fraction, message)
        if not self._work:
            self.progress.setVisible(False)
            self.work_label.setVisible(False)
            self.cancel_button.setVisible(False)
            return
        kind, (fraction, message) = next(reversed(self._work.items()))
        self.progress.setVisible(True)
        self.progress.setValue(int(fraction * 1000))
        self.progress.setFormat(message or kind)
        self.work_label.set_full_text(message or kind)
        self.work_label.setVisible(True)
        self.cancel_button.setVisible(any(k in METHODS for k in self._work))

    def _model_changed(self) -> None:
        m = self.state.model
        if m is not None:
            self._show_device()
            if m.device.startswith("GPU"):
                self._gpu_timer.start(GPU_MEMORY_POLL_MS)
            self.model_label.setText(model_title(m.name, m.version))
            return
        self._gpu_timer.stop()
        self.device_label.setText("")
        status = self.state.model_status
        text = {
            "none": "No model",
            "loading": "Loading model…",
            "warming up": "Warming up…",
            "failed": "Model failed to load",
        }.get(status, status)
        self.model_label.setText(text)

    def _show_device(self) -> None:
        m = self.state.model
        if m is None:
            return
        used = model_io.gpu_memory_in_use() if m.device.startswith("GPU") else None
        memory = f" · {used / 2**20:.0f} MB GPU memory in use" if used is not None else ""
        forward = f" · forward: {m.forward_path}" if m.forward_path else ""
        self.device_label.setText(f"Model runs on: {m.device}{memory}{forward}")

    def _fill_device_menu(self) -> None:
        menu = self.device_button.menu()
        menu.clear()
        group = QActionGroup(menu)
        current = self.settings.device
        rs = model_io.runtime_state()
        choices = ["auto", "cpu", *(f"gpu:{i}" for i in range(rs.gpus_found if rs else 1))]
        if current not in choices:
            choices.append(current)
        labels = {"auto": "Auto (first GPU, else CPU)", "cpu": "CPU"}
        for choice in choices:
            action = QAction(labels.get(choice, choice.upper().replace(":", " ")), menu)
            action.setCheckable(True)
            action.setChecked(choice == current)
            action.triggered.connect(lambda _=False, c=choice: self.choose_device(c))
            group.addAction(action)
            menu.addAction(action)
        menu.addSeparator()
        cap = self.settings.gpu_memory_mb
        memory = QAction(f"GPU memory: {f'cap {cap} MB' if cap else 'grow as needed'}…", menu)
        memory.triggered.connect(self._ask_gpu_memory_cap)
        menu.addAction(memory)
        mixed = QAction("Mixed precision on a GPU (checked against float32)", menu)
        mixed.setCheckable(True)
        mixed.setChecked(self.settings.mixed_precision)
        mixed.toggled.connect(self.set_mixed_precision)
        menu.addAction(mixed)

    def _ask_gpu_memory_cap(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        value, ok = QInputDialog.getInt(
            self,
            "GPU memory",
            "Cap TensorFlow's GPU memory at MB (0: grow as needed, leaving the rest to others):",
            self.settings.gpu_memory_mb or 0,
            0,
            1 << 20,
            256,
        )
        if ok:
            self.set_gpu_memory_cap(value or None)

    def _apply(self) -> bool:
        """Hand the saved settings to TensorFlow's one start place; True if they apply now."""
        self.settings.sync()
        return model_io.configure(
            self.settings.device,
            self.settings.gpu_memory_mb,
            model_io.runtime_config().verbose,
            self.settings.mixed_precision,
        )

    def _when(self, now: bool) -> str:
        if not now:
            return "takes effect at next start (TensorFlow cannot switch devices while running)"
        return "applies when the model loads" if model_io.runtime_state() is None else "in use"

    def choose_device(self, choice: str) -> bool:
        """Save the device choice; True if it applies in this session."""
        self.settings.device = choice
        now = self._apply()
        self.show_message(f"Device: {choice} — {self._when(now)}", 10000)
        return now

    def set_gpu_memory_cap(self, mb: int | None) -> bool:
        """Save the GPU memory cap (None: grow as needed); True if it applies in this session."""
        self.settings.gpu_memory_mb = mb
        now = self._apply()
        what = f"capped at {mb} MB" if mb else "grows as needed"
        self.show_message(f"GPU memory {what} — {self._when(now)}", 10000)
        return now

    def set_mixed_precision(self, on: bool) -> None:
        """Save the choice; it applies to the next model loaded (checked against float32)."""
        self.settings.mixed_precision = on
        self._apply()
        self.show_message(
            f"Mixed precision {'on' if on else 'off'} for the next model loaded"
            + (" (used on a GPU only, if it matches float32)" if on else ""),
            10000,
        )

    def _window_changed(self) -> None:
        w = self.state.effective_window
        inv = " · inverted" if self.state.invert_flip else ""
        self.window_label.setText(
            f"C {w.center:.4g} / W {w.width:.4g}{inv}" if w else f"VOI LUT{inv}"
        )

    def show_pixel(self, x: int, y: int) -> None:
        s = self.state.study
        if s is None or x < 0 or y < 0 or y >= s.rows or x >= s.columns:
            self.pixel.setText("")
            return
        self.pixel.setText(f"x {x}, y {y}: {float(s.pixels[y, x]):.5g}")
