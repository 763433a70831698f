"""DICOMweb node settings (core/interop/dicomweb.py) and the object-kind list of --dicom-objects
(core/interop/dicom_results.py): validation without any network."""

from __future__ import annotations

import pytest

from cxr_viewer.core.errors import DicomExportError, PacsError
from cxr_viewer.core.interop.dicom_results import DEFAULT_KINDS, parse_kinds
from cxr_viewer.core.interop.dicomweb import DicomWebClient, DicomWebNode


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"url": "pacs.example.org/dicom-web"}, "must start with https://"),
        ({"url": "ftp://pacs.example.org/"}, "must start with https://"),
        ({"url": "https://user:pw@pacs.example.org/dicom-web"}, "would be shown and stored"),
        ({"url": "https://pacs.example.org", "auth": "digest"}, "one of none, basic, bearer"),
        ({"url": "https://pacs.example.org", "auth": "basic"}, "none was given"),
        ({"url": "https://pacs.example.org", "auth": "bearer"}, "none was given"),
        (
            {"url": "http://pacs.example.org/dicom-web", "auth": "bearer", "token": "t"},
            "reached over http://",
        ),
        ({"url": "https://pacs.example.org", "ca_bundle": "/no/such/ca.pem"}, "does not exist"),
    ],
)
def test_bad_nodes_are_clear_errors(kwargs, why):
    with pytest.raises(PacsError, match=why) as err:
        DicomWebNode(**kwargs)
    assert err.value.hint


def test_node_keeps_secrets_out_of_settings_and_labels():
    node = DicomWebNode("https://pacs.example.org/dicom-web/", "basic", "ann", password="pw")
    assert node.url == "https://pacs.example.org/dicom-web"
    stored = node.as_dict()
    assert "pw" not in repr(stored) and "pw" not in repr(node) and "pw" not in node.label
    assert stored["verify_tls"] is True  # TLS verification is on by default
    again = DicomWebNode.from_dict(stored, password="pw")
    assert again == node
    bearer = DicomWebNode("http://127.0.0.1:8042/dicom-web", "bearer", token="tok")
    assert "tok" not in repr(bearer) and "tok" not in repr(bearer.as_dict())
    session = DicomWebClient(bearer)._session()
    assert session.headers["Authorization"] == "Bearer tok" and session.verify is True
    basic = DicomWebClient(node)._session()
    assert basic.auth == ("ann", "pw")


def test_object_kinds():
    assert DEFAULT_KINDS == ("pm", "sr")
    assert parse_kinds("SR, pm") == ("pm", "sr")
    assert parse_kinds("sc,pm,sr,seg") == ("sc", "pm", "sr", "seg")
    for bad in ("pm,xx", "", " , "):
        with pytest.raises(DicomExportError, match="not among sc, pm, sr, seg"):
            parse_kinds(bad)
