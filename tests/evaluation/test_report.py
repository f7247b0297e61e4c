"""The shared report of the evaluation pipelines: JSON written atomically, the table logged (and optionally saved)."""

import json
import logging

from common.evaluation import format_table, write_report


def test_write_report_json_table_and_log(tmp_path, caplog):
    results = {"fid": 1.5, "name": "x", "nested": {"a": 1}}
    out = tmp_path / "deep" / "metrics.json"
    with caplog.at_level(logging.INFO, logger="common.evaluation"):
        table = write_report(results, out, title="unit evaluation", table_file=tmp_path / "metrics.txt")
    assert json.loads(out.read_text()) == results and out.read_text().endswith("\n")
    assert table == format_table(results) and (tmp_path / "metrics.txt").read_text() == table + "\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["metrics.json"]  # no temporary file left
    assert "unit evaluation" in caplog.text and str(out) in caplog.text and table in caplog.text


def test_write_report_custom_table_and_json_options(tmp_path, caplog):
    out = tmp_path / "m.json"
    with caplog.at_level(logging.INFO, logger="common.evaluation"):
        table = write_report({"path": tmp_path}, out, table="custom table", indent=1, default=str)
    assert table == "custom table" and "custom table" in caplog.text
    assert json.loads(out.read_text()) == {"path": str(tmp_path)} and out.read_text().startswith('{\n "path"')
