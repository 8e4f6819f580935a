"""Generates the gRPC stubs from the service's own proto while the package is built.

The proto is read from $SMART_AUTHZ_PROTO_DIR, else the sdist's own copy in proto/, else
../../proto (this directory inside the smart-authz repository). The stubs land in
smart_authz_client/_pb/, with the one absolute import grpcio-tools writes (`from
smartauthz.v1 import authz_pb2`) made relative, so the package does not claim the top-level
name `smartauthz`.
"""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

PROTO = "smartauthz/v1/authz.proto"

HERE = Path(__file__).resolve().parent


def proto_root() -> Path:
    configured = os.environ.get("SMART_AUTHZ_PROTO_DIR")
    if configured:
        root = Path(configured)
    elif (HERE / "proto" / PROTO).is_file():
        # An sdist's own copy (SdistWithProto).
        root = HERE / "proto"
    else:
        root = HERE / "../../proto"
    if not (root / PROTO).is_file():
        raise SystemExit(f"{root / PROTO} not found: set SMART_AUTHZ_PROTO_DIR")
    return root


def generate(package_dir: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    out = package_dir / "_pb"
    out.mkdir(parents=True, exist_ok=True)
    include = Path(grpc_tools.__file__).parent / "_proto"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_root()}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            PROTO,
        ]
    )
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    generated = out / "smartauthz" / "v1"
    for directory in (out, out / "smartauthz", generated):
        (directory / "__init__.py").touch()
    stubs = generated / "authz_pb2_grpc.py"
    text = stubs.read_text()
    absolute = "from smartauthz.v1 import authz_pb2"
    if absolute not in text:
        raise SystemExit(f"unexpected import layout in {stubs}")
    stubs.write_text(text.replace(absolute, "from . import authz_pb2"))


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        generate(Path(self.build_lib) / "smart_authz_client")


class SdistWithProto(sdist):
    """An sdist carries the proto it was made from, so that it builds away from the
    repository (pip installing it, or `python -m build`, which builds the wheel from it)."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        target = Path(base_dir) / "proto" / PROTO
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(proto_root() / PROTO, target)


setup(cmdclass={"build_py": BuildWithStubs, "sdist": SdistWithProto})
