"""The README's spec section is generated from the schema: every key, its default, its meaning."""

from __future__ import annotations

import re
from pathlib import Path

from bottleneck_transfer.pipeline.spec import SCHEMA, load_spec, spec_reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_block_is_the_generated_reference():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- spec-keys:[^\n]*-->\n(.*?)\n<!-- /spec-keys -->", text, re.DOTALL)
    assert block, "README.md has no spec-keys block"
    assert block.group(1) == spec_reference()  # regenerate with spec_reference() when it fails


def test_every_key_is_documented_with_the_default_load_spec_fills(tmp_path):
    rows = {
        line.split("|")[1].strip(" `"): line.split("|")[3].strip()
        for line in spec_reference().splitlines()[2:]
    }
    assert set(rows) == {f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys}
    assert all(key.doc for keys in SCHEMA.values() for key in keys.values())
    spec = tmp_path / "spec.toml"
    body = f'[data]\ntrain = "{tmp_path}"\n[base]\nname = "mobilenet_v2"\n[heads]\ncv = 3\n'
    spec.write_text(body)
    loaded = load_spec(spec)
    assert rows["heads.use"] == "`" + str(loaded["heads"]["use"]).replace("'", '"') + "`"
    assert rows["export.predict"] == f"`{loaded['export']['predict']}`"
    assert rows["base.trust_graph"] == "`false`" and loaded["base"]["trust_graph"] is False
    assert rows["data.test"] == "unset" and loaded["data"]["test"] is None
