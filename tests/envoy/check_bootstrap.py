#!/usr/bin/env python3
"""Checks every Envoy bootstrap in the given Markdown files against Envoy's own schema.

A bootstrap is a ```yaml block with `static_resources`. Each is parsed strictly into
envoy.config.bootstrap.v3.Bootstrap (xds-protos from PyPI, pinned in .ci/run): an unknown
field, a misspelt enum value or a wrong type fails, and so does a field Envoy marks
deprecated. Run by tests/envoy_docs.rs; exits 1 and names the file and line on the first
problem of each block.
"""
import importlib
import pkgutil
import re
import sys

import yaml
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor


def yaml_blocks(path):
    """(first line, text) of every ```yaml block that is an Envoy bootstrap."""
    blocks, current, start, language = [], None, 0, ""
    with open(path, encoding="utf-8") as markdown:
        for number, line in enumerate(markdown, 1):
            fence = re.match(r"^```(\w*)", line)
            if fence and current is None:
                current, start, language = [], number + 1, fence.group(1)
            elif line.startswith("```") and current is not None:
                text = "".join(current)
                if language == "yaml" and "static_resources" in text:
                    blocks.append((start, text))
                current = None
            elif current is not None:
                current.append(line)
    return blocks


def import_typed_configs(value):
    """Imports the modules of every `@type`, so the descriptor pool can resolve the Any."""
    if isinstance(value, dict):
        url = value.get("@type")
        if isinstance(url, str):
            package = url.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            module = importlib.import_module(package)
            for info in pkgutil.iter_modules(module.__path__):
                if info.name.endswith("_pb2"):
                    importlib.import_module(f"{package}.{info.name}")
        for item in value.values():
            import_typed_configs(item)
    elif isinstance(value, list):
        for item in value:
            import_typed_configs(item)


def deprecated_fields(message, path=""):
    """The deprecated fields set in a parsed message, by path, typed configs included."""
    if message.DESCRIPTOR.full_name == "google.protobuf.Any":
        name = message.type_url.rsplit("/", 1)[-1]
        inner = descriptor_pool.Default().FindMessageTypeByName(name)
        typed = message_factory.GetMessageClass(inner)()
        message.Unpack(typed)
        return deprecated_fields(typed, f"{path}[{name}]")
    found = []
    for field, value in message.ListFields():
        here = f"{path}.{field.name}" if path else field.name
        if field.GetOptions().deprecated:
            found.append(here)
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            values = list(value.values())
        elif field.is_repeated:
            values = list(value)
        else:
            values = [value]
        for item in values:
            if hasattr(item, "ListFields"):
                found.extend(deprecated_fields(item, here))
    return found


def main(paths):
    from envoy.config.bootstrap.v3 import bootstrap_pb2

    failures, checked = 0, 0
    for path in paths:
        for line, text in yaml_blocks(path):
            checked += 1
            where = f"{path}:{line}"
            try:
                config = yaml.safe_load(text)
                import_typed_configs(config)
                bootstrap = json_format.ParseDict(config, bootstrap_pb2.Bootstrap())
            except Exception as error:  # any failure to read the block is a finding
                print(f"{where}: not a valid Envoy bootstrap: {error}")
                failures += 1
                continue
            old = deprecated_fields(bootstrap)
            if old:
                print(f"{where}: deprecated fields: {', '.join(old)}")
                failures += 1
            else:
                print(f"{where}: ok")
    if checked == 0:
        print("no Envoy bootstrap found")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
