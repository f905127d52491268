"""metrics.jsonl across a resume: records after the checkpoint dropped, a line cut short by a crash
mid-write dropped with one warning line, partial logging windows marked."""

import json

from classic_cnns.metrics import MetricsWriter

RECORDS = [
  {"step": 10, "split": "train", "loss": 2.25, "top1": 0.125},
  {"step": 20, "split": "train", "loss": 1.5, "top1": 0.5},
  {"step": 20, "split": "test", "loss": 1.75, "top1": 0.375},
  {"step": 30, "split": "train", "loss": 1.0, "top1": 0.75},
]


def _write(path, text):
  path.write_text(text)


def _lines(workdir):
  return (workdir / "metrics.jsonl").read_text().splitlines(keepends=True)


def _full(records):
  return "".join(json.dumps(r) + "\n" for r in records)


def _warnings(capsys):
  return [l for l in capsys.readouterr().out.splitlines() if l.startswith("warning:")]


def test_a_torn_last_line_is_dropped_with_one_warning(tmp_path, capsys):
  _write(tmp_path / "metrics.jsonl", _full(RECORDS) + '{"step": 40, "split": "train", "loss": 0.7')
  w = MetricsWriter(str(tmp_path), resume_step=30)
  w.write(40, "train", {"loss": 0.5, "top1": 0.875})
  w.close()
  assert "".join(_lines(tmp_path)) == _full(
    RECORDS + [{"step": 40, "split": "train", "loss": 0.5, "top1": 0.875}]
  )
  warnings = _warnings(capsys)
  assert len(warnings) == 1 and "cut short by an interrupted write" in warnings[0], warnings


def test_records_after_the_resume_step_and_final_ones_are_dropped(tmp_path, capsys):
  _write(
    tmp_path / "metrics.jsonl", _full(RECORDS + [{"step": 30, "split": "test_final", "loss": 1.0}])
  )
  MetricsWriter(str(tmp_path), resume_step=20).close()
  assert "".join(_lines(tmp_path)) == _full(RECORDS[:3])
  assert not _warnings(capsys)


def test_a_last_record_without_its_newline_is_kept_whole(tmp_path, capsys):
  """Cut after the closing brace: the record is complete and stays, on a line of its own."""
  _write(tmp_path / "metrics.jsonl", _full(RECORDS)[:-1])
  w = MetricsWriter(str(tmp_path), resume_step=30)
  w.write(40, "train", {"loss": 0.5})
  w.close()
  assert [json.loads(l)["step"] for l in _lines(tmp_path)] == [10, 20, 20, 30, 40]
  assert not _warnings(capsys)


def test_unreadable_lines_elsewhere_are_named(tmp_path, capsys):
  text = _full(RECORDS[:1]) + "garbage\n" + _full(RECORDS[1:])
  _write(tmp_path / "metrics.jsonl", text)
  MetricsWriter(str(tmp_path), resume_step=30).close()
  assert "".join(_lines(tmp_path)) == _full(RECORDS)
  warnings = _warnings(capsys)
  assert len(warnings) == 1 and "unreadable line(s) 2" in warnings[0], warnings


def test_partial_windows_are_marked_and_full_ones_are_not(tmp_path):
  w = MetricsWriter(str(tmp_path), resume_step=0)
  w.write(10, "train", {"loss": 1.0}, partial_window=True)
  w.write(20, "train", {"loss": 0.5})
  w.close()
  assert [json.loads(l) for l in _lines(tmp_path)] == [
    {"step": 10, "split": "train", "loss": 1.0, "partial_window": True},
    {"step": 20, "split": "train", "loss": 0.5},
  ]
