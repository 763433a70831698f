"""The viewer's device setting: QSettings round trip and the status bar's device menu."""

from __future__ import annotations

import pytest

from cxr_viewer.gui.settings import Settings
from cxr_viewer.gui.state import ViewerState
from cxr_viewer.gui.status import StatusArea


def test_device_settings_round_trip_through_qsettings(tmp_path):
    ini = tmp_path / "settings.ini"
    s = Settings(ini)
    assert (s.device, s.gpu_memory_mb, s.mixed_precision) == ("auto", None, False)
    s.device = " GPU:1 "
    s.gpu_memory_mb = 2048
    s.mixed_precision = True
    s.sync()
    again = Settings(ini)
    assert (again.device, again.gpu_memory_mb, again.mixed_precision) == ("gpu:1", 2048, True)
    again.device = "cpu"
    again.gpu_memory_mb = None
    again.sync()
    third = Settings(ini)
    assert (third.device, third.gpu_memory_mb) == ("cpu", None)


def test_bad_device_values_are_refused_or_ignored(tmp_path):
    s = Settings(tmp_path / "settings.ini")
    with pytest.raises(ValueError, match="expected auto, cpu or gpu:N"):
        s.device = "tpu"
    s.q.setValue("device/choice", "tpu:3")  # a hand-edited or future value
    s.q.setValue("device/gpu_memory_mb", "lots")
    assert s.device == "auto" and s.gpu_memory_mb is None


def test_the_device_menu_saves_the_choice_for_the_next_start(qtbot, tmp_path):
    from cxr_viewer.core.model import model_io

    tf = model_io.import_tensorflow()  # TensorFlow runs (on auto): it cannot switch now
    settings = Settings(tmp_path / "settings.ini")
    status = StatusArea(ViewerState(), settings=settings)
    qtbot.addWidget(status)
    assert status.device_button.isVisibleTo(status)
    status._fill_device_menu()
    texts = [a.text() for a in status.device_button.menu().actions()]
    gpus = len(tf.config.list_physical_devices("GPU"))
    assert texts == [
        "Auto (first GPU, else CPU)",
        "CPU",
        *(f"GPU {i}" for i in range(gpus)),
        "",  # separator
        "GPU memory: grow as needed…",
        "Mixed precision on a GPU (checked against float32)",
    ]
    assert [a.isChecked() for a in status.device_button.menu().actions()][:2] == [True, False]

    status.device_button.menu().actions()[1].trigger()  # CPU
    assert Settings(tmp_path / "settings.ini").device == "cpu"
    assert "takes effect at next start" in status.msg.text()
    assert model_io.runtime_state().request == "auto"  # unchanged in this process
    assert status.choose_device("auto") is True
    assert "auto — in use" in status.msg.text()
    assert status.set_gpu_memory_cap(1024) is False  # TensorFlow runs: at the next start
    assert Settings(tmp_path / "settings.ini").gpu_memory_mb == 1024
    assert "capped at 1024 MB — takes effect at next start" in status.msg.text()
    status._fill_device_menu()
    assert "GPU memory: cap 1024 MB…" in [a.text() for a in status.device_button.menu().actions()]
    assert status.set_gpu_memory_cap(None) is True
    status.device_button.menu().actions()[-1].trigger()  # mixed precision on
    assert Settings(tmp_path / "settings.ini").mixed_precision is True
    assert "Mixed precision on for the next model loaded" in status.msg.text()
    assert model_io.runtime_config().mixed_precision is True  # for the next model loaded
    status.device_button.menu().actions()[-1].trigger()  # and off again
    assert model_io.runtime_config().mixed_precision is False
