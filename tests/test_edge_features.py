"""The feature table: stable, well-formed, documented."""

from __future__ import annotations

import re

import pytest

from edge.features import APP_GROUP_NAMES, FEATURE_NAMES, FEATURES, app_group, features_markdown
from tests.conftest import REPO

UNITS = {"pkts", "bytes", "s", "ms", "bits", "per_s", "count", "fraction", "ratio"}


def test_feature_list_is_stable():
    """Changing the list breaks every model and Parquet file: update the golden file on purpose."""
    golden = (REPO / "tests" / "golden" / "feature_names.txt").read_text().split()
    assert list(FEATURE_NAMES) == golden


def test_features_are_unique_named_and_united():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert 45 <= len(FEATURES) <= 70
    for f in FEATURES:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", f.name), f.name
        assert f.unit in UNITS, (f.name, f.unit)
        assert f.doc and not f.doc.endswith(".")


def test_docs_table_is_generated_from_the_code():
    assert (REPO / "docs" / "features.md").read_text() == features_markdown()


@pytest.mark.parametrize(
    ("name", "group"),
    [("TLS.Google", "tls"), ("DNS", "dns"), ("MQTT", "mqtt"), ("CoAP", "coap"), ("Unknown", "unknown"),
     ("MDNS", "discovery"), ("Telnet", "remote_access"), ("BitTorrent", "other")],
)
def test_app_groups(name, group):
    assert app_group(name) == group
    assert group in APP_GROUP_NAMES
