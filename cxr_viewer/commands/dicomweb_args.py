"""Command-line options for a DICOMweb node (``cxr-viewer batch --send https://...``).

Secrets are never taken on the command line (it shows in process lists and shell history):
the password of ``--dicomweb-auth basic`` comes from ``$CXR_DICOMWEB_PASSWORD``, the token of
``--dicomweb-auth bearer`` from ``$CXR_DICOMWEB_TOKEN``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from cxr_viewer.core.interop.dicomweb import AUTH_MODES, DicomWebNode

PASSWORD_ENV = "CXR_DICOMWEB_PASSWORD"
TOKEN_ENV = "CXR_DICOMWEB_TOKEN"


def is_dicomweb(target: str) -> bool:
    """True when a ``--send`` target is a DICOMweb URL rather than AE@HOST:PORT."""
    return target.strip().lower().startswith(("http://", "https://"))


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--dicomweb-auth",
        choices=AUTH_MODES,
        default="none",
        help=f"DICOMweb authentication for an https:// --send: basic (user, password from "
        f"${PASSWORD_ENV}) or bearer (token from ${TOKEN_ENV}); default none",
    )
    group.add_argument("--dicomweb-user", default="", help="user name for --dicomweb-auth basic")
    group.add_argument(
        "--dicomweb-ca", default="", metavar="PEM", help="CA certificate file to verify TLS with"
    )
    group.add_argument(
        "--dicomweb-no-verify",
        action="store_true",
        help="do not verify the server's TLS certificate (tests only)",
    )


def node_from_args(args: Any) -> DicomWebNode:
    auth = getattr(args, "dicomweb_auth", "none")
    return DicomWebNode(
        url=str(args.send),
        auth=auth,
        username=getattr(args, "dicomweb_user", ""),
        password=os.environ.get(PASSWORD_ENV, "") if auth == "basic" else "",
        token=os.environ.get(TOKEN_ENV, "") if auth == "bearer" else "",
        verify_tls=not getattr(args, "dicomweb_no_verify", False),
        ca_bundle=getattr(args, "dicomweb_ca", ""),
    )
