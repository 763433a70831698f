import numpy as np
import pytest

from cxr_viewer.core.io.display import (
    apply_window,
    auto_window_from_pixels,
    display_image,
    to_uint8,
)
from cxr_viewer.core.io.study import Study, Window


def _study(pixels, **kw):
    return Study(
        path=__import__("pathlib").Path("x.dcm"),
        format="dicom",
        pixels=pixels,
        auto_window=auto_window_from_pixels(pixels),
        **kw,
    )


def test_linear_window_matches_dicom_formula():
    # PS3.3 C.11.2.1.2.1, c=2048 w=4096: x <= c-0.5-(w-1)/2 -> 0 ; x > c-0.5+(w-1)/2 -> 1
    w = Window(2048, 4096)
    x = np.array([-10.0, 0.0, 2047.5, 4095.0, 5000.0], np.float32)
    y = apply_window(x, w)
    assert y[0] == 0.0 and y[1] == 0.0 and y[-1] == 1.0 and y[-2] == 1.0
    assert y[2] == pytest.approx(0.5, abs=1e-6)


def test_sigmoid_window_is_half_at_centre():
    y = apply_window(np.array([100.0]), Window(100, 50, "SIGMOID"))
    assert y[0] == pytest.approx(0.5)


def test_monochrome1_inverts_once():
    px = np.tile(np.arange(256, dtype=np.float32), (4, 1))
    mono2 = display_image(_study(px, windows=[Window(127.5, 255, "LINEAR_EXACT")]))
    mono1 = display_image(_study(px, windows=[Window(127.5, 255, "LINEAR_EXACT")], invert=True))
    np.testing.assert_allclose(mono1, 1.0 - mono2)
    # the viewer's invert toggle undoes it
    np.testing.assert_allclose(
        display_image(
            _study(px, windows=[Window(127.5, 255, "LINEAR_EXACT")], invert=True), invert=False
        ),
        mono2,
    )
    assert to_uint8(mono2)[0, 0] == 0 and to_uint8(mono2)[0, -1] == 255


def test_window_rejects_non_positive_width():
    with pytest.raises(ValueError):
        Window(0, 0)
