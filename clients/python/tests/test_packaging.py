"""The package as it is published: an sdist that builds into a wheel away from the
repository, with the stubs generated from the proto it carries."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

CLIENT = Path(__file__).resolve().parent.parent


def test_the_sdist_carries_its_proto_and_builds_a_wheel(tmp_path):
    # With no option, `build` makes the sdist, then the wheel from the sdist alone,
    # unpacked in a directory of its own (the repository's ../../proto out of reach).
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path), str(CLIENT)],
        check=True,
        capture_output=True,
    )
    [sdist] = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(name.endswith("/proto/smartauthz/v1/authz.proto") for name in names), names
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "smart_authz_client/_pb/smartauthz/v1/authz_pb2.py" in names, names
    assert "smart_authz_client/_pb/smartauthz/v1/authz_pb2_grpc.py" in names, names
