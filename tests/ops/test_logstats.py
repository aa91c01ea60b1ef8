"""The access-log report: numbers from known logs, odd lines, inputs, the CLI and the HTML."""

import gzip
import html
import json
import math
import random
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import ImageFont

from cropper.ops.logstats import MAX_BARS, LogStats, main, percentile, read_entries, render_html, render_text

ROOT = Path(__file__).resolve().parent.parent
UUID_A = "9e140d51-2a43-5870-9337-eb66c5a4de6d"
UUID_B = "f11816b8-1234-4abc-8def-0123456789ab"
UUID_C = "0a000000-0000-4000-8000-000000000000"
START = datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc)


def entry(seconds=0, **fields):
    """One log object like nginx writes, `seconds` after START."""
    line = {"time": (START + timedelta(seconds=seconds)).isoformat(), "client": "127.0.0.1", "method": "POST",
            "uri": "/cropper/", "status": 200, "bytes": 231, "request_time": 0.010, "upstream_response_time": "0.009",
            "upstream_status": "200", "cache": "miss", "user_agent": "python-requests/2.34", "referer": ""}
    line.update(fields)
    return line


def image(uuid, cache="hit", **fields):
    """A GET of one of the image's crops."""
    return entry(method="GET", uri=f"/crops/{uuid[:2]}/{uuid}/100_100_405_400.webp", cache=cache,
                 upstream_response_time="", upstream_status="", **fields)


def write_log(path, lines):
    """Write dicts as JSON lines and strings as they are; return the path as a string."""
    text = "".join((json.dumps(line) if isinstance(line, dict) else line) + "\n" for line in lines)
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as out:
            out.write(text)
    else:
        Path(path).write_text(text, encoding="utf-8")
    return str(path)


def summarize(tmp_path, lines, top=10):
    """The summary of a log holding `lines`, read back from a file."""
    stats = LogStats(top=top)
    for decoded in read_entries([write_log(tmp_path / "access.log", lines)]):
        stats.add(decoded)
    return stats.summary()


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "cropper.logstats", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_counts_by_status_and_error_shares(tmp_path):
    lines = [entry(status=200)] * 6 + [entry(status=404)] * 2 + [entry(status=429), entry(status=502)]
    summary = summarize(tmp_path, lines)
    assert summary["requests"] == 10
    assert summary["by_status"] == {"200": 6, "404": 2, "429": 1, "502": 1}
    assert list(summary["by_status"]) == ["200", "404", "429", "502"]
    assert summary["errors"] == {"4xx": {"count": 3, "share": 0.3}, "5xx": {"count": 1, "share": 0.1}}


def test_cache_hit_ratio_and_regenerated_crops(tmp_path):
    lines = ([image(UUID_A)] * 6 + [entry(cache="miss")] * 2 + [image(UUID_B, cache="regenerated")] * 2
             + [entry(method="GET", uri="/healthz", cache="")])
    summary = summarize(tmp_path, lines)
    assert summary["cache"] == {"hits": 6, "store": 0, "misses": 2, "regenerated": 2, "hit_ratio": 0.6}
    assert summary["regenerated"] == {"requests": 2, "distinct_crops": 1}


def test_crops_read_from_the_store_are_counted_as_served_from_the_cache(tmp_path):
    # Several hosts: nginx logs cache "store" for a crop read from the shared bucket (not made again).
    lines = [image(UUID_A, cache="store", request_time=0.004)] * 3 + [image(UUID_A)] + [entry(cache="miss")] * 4
    summary = summarize(tmp_path, lines)
    assert summary["cache"] == {"hits": 1, "store": 3, "misses": 4, "regenerated": 0, "hit_ratio": 0.5}
    assert summary["latency_ms"]["image_store"]["count"] == 3
    assert "store 3" in render_text(summary)


def test_hit_ratio_is_none_without_crop_responses(tmp_path):
    summary = summarize(tmp_path, [entry(method="GET", uri="/healthz", cache="")])
    assert summary["cache"]["hit_ratio"] is None
    assert "hit ratio n/a" in render_text(summary)


def test_percentiles_use_nearest_rank(tmp_path):
    latencies = list(range(1, 101))
    random.Random(7).shuffle(latencies)
    summary = summarize(tmp_path, [entry(request_time=ms / 1000) for ms in latencies])
    assert summary["percentile_method"] == "nearest-rank"
    assert summary["latency_ms"]["crop"] == {"count": 100, "p50": 50, "p95": 95, "p99": 99, "max": 100}
    assert [percentile([10, 20, 30, 40], p) for p in (50, 95, 99)] == [20, 40, 40]
    assert percentile([7], 50) == 7


def test_latency_split_by_request_kind_and_cache(tmp_path):
    lines = [entry(uri="/cropper", request_time=0.2), entry(uri="/cropper-list/?x=1", request_time=0.5),
             image(UUID_A, request_time=0.001), image(UUID_A, request_time=0.003),
             image(UUID_A, cache="regenerated", request_time=0.9), entry(method="GET", uri="/healthz", cache="")]
    summary = summarize(tmp_path, lines)
    latency = summary["latency_ms"]
    assert (latency["crop"]["p50"], latency["batch"]["p50"]) == (200, 500)
    assert latency["image"]["count"] == 3 and latency["image"]["max"] == 900
    assert (latency["image_hit"]["count"], latency["image_hit"]["p99"]) == (2, 3)
    assert (latency["image_regenerated"]["count"], latency["image_regenerated"]["p50"]) == (1, 900)
    assert summary["by_kind"] == {"crop": 1, "batch": 1, "image": 3, "health": 1, "other": 0}
    hist = dict(summary["histograms"]["image"])
    assert (hist["1-2 ms"], hist["2-5 ms"], hist["500 ms-1 s"], hist[">10 s"]) == (1, 1, 1, 0)


def test_top_images_and_clients_in_order(tmp_path):
    lines = ([image(UUID_A, client="10.0.0.1")] * 3 + [image(UUID_B, client="10.0.0.2")] * 5
             + [image(UUID_C, client="10.0.0.3")] * 3
             + [entry(uri=f"/crops/9e/{UUID_A}/1_1_2_2.png?v=2", method="GET", cache="hit")]
             + [entry(method="GET", uri="/crops/zz/not-a-uuid/1_1_2_2.webp")])
    summary = summarize(tmp_path, lines, top=2)
    assert summary["top_images"] == [{"uuid": UUID_B, "requests": 5}, {"uuid": UUID_A, "requests": 4}]
    assert summary["top_clients"] == [{"client": "10.0.0.2", "requests": 5}, {"client": "10.0.0.1", "requests": 3}]


def test_unparsed_lines_are_counted_and_skipped(tmp_path):
    lines = [entry(), "garbage", "", "   ", "[1, 2, 3]", "42", "null", '{"time": "2026-', entry()]
    summary = summarize(tmp_path, lines)
    assert (summary["requests"], summary["unparsed"]) == (2, 7)


def test_odd_fields_do_not_crash(tmp_path):
    lines = [entry(status="abc", request_time="-", time="not a time", bytes=None), {}, entry(status="404")]
    summary = summarize(tmp_path, lines)
    assert summary["requests"] == 3
    assert summary["by_status"] == {"404": 1, "-": 2}
    assert summary["latency_ms"]["crop"]["count"] == 1


def test_times_at_the_ends_of_the_calendar_do_not_crash_the_report(tmp_path):
    odd = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59"]
    summary = summarize(tmp_path, [entry(0)] + [entry(time=moment) for moment in odd])
    assert summary["requests"] == 5
    assert summary["time"]["first"] == summary["time"]["last"] == START.isoformat()
    render_text(summary), render_html(summary)


def test_upstream_dash_and_lists_are_accepted(tmp_path):
    lines = [entry(upstream_response_time="-", upstream_status="-", status=499),
             entry(upstream_response_time="0.010, 0.004", upstream_status="502, 200"),
             entry(upstream_response_time="0.010", upstream_status="200")]
    summary = summarize(tmp_path, lines)
    assert summary["requests"] == 3
    assert summary["upstream"] == {"requests": 2, "retried": 1}


def test_gz_and_plain_logs_add_up(tmp_path, capsys):
    plain = write_log(tmp_path / "access.log", [entry(status=200)] * 2)
    rotated = write_log(tmp_path / "access.log.2.gz", [entry(status=500)] * 3 + ["garbage"])
    assert main([plain, rotated, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["requests"], summary["unparsed"]) == (5, 1)
    assert summary["by_status"] == {"200": 2, "500": 3}


def test_timeline_bar_width_follows_the_span(tmp_path):
    def timeline(lines):
        return summarize(tmp_path, lines)["timeline"]

    seconds = timeline([entry(0), entry(1), entry(299, status=503)])
    assert (seconds["unit"], len(seconds["bars"])) == ("second", 300)
    assert seconds["bars"][-1] == [(START + timedelta(seconds=299)).isoformat(), 0, 0, 0, 1, 0]
    minutes = timeline([entry(s) for s in range(0, 7200, 30)])
    assert (minutes["unit"], len(minutes["bars"])) == ("minute", 120)
    assert sum(sum(bar[1:]) for bar in minutes["bars"]) == 240
    hours = timeline([entry(0), entry(3 * 86400)])
    assert (hours["unit"], len(hours["bars"])) == ("hour", 73)


def test_cli_reads_stdin_and_prints_json():
    log = "".join(json.dumps(line) + "\n" for line in [entry(), image(UUID_A), image(UUID_A, cache="regenerated")])
    result = run_cli("-", "--json", stdin=log + "not json\n")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["requests"], summary["unparsed"]) == (3, 1)
    assert summary["top_images"] == [{"uuid": UUID_A, "requests": 2}]


def test_cli_text_report(tmp_path):
    log = write_log(tmp_path / "access.log", [entry(), image(UUID_A), image(UUID_A, status=404)])
    result = run_cli(log, "--top", "1")
    assert result.returncode == 0, result.stderr
    assert "Requests   3  (unparsed lines: 0)" in result.stdout
    assert "Status     200: 2  404: 1" in result.stdout
    assert "hit ratio 66.7%" in result.stdout
    assert UUID_A in result.stdout


def test_missing_file_exits_2(tmp_path):
    result = run_cli(str(tmp_path / "nope.log"), "--json")
    assert result.returncode == 2
    assert "no such file" in result.stderr and "nope.log" in result.stderr
    assert result.stdout == ""


def test_html_report_is_self_contained_and_escaped(tmp_path, capsys):
    evil = "<script>alert(1)</script>"
    log = write_log(tmp_path / "access.log", [entry(client=evil, user_agent=evil, uri=f"/{evil}", referer=evil),
                                              image(UUID_A), entry(60, status=502)])
    report = tmp_path / "report.html"
    assert main([log, "--html", str(report)]) == 0
    assert "Requests   3" in capsys.readouterr().out
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert UUID_A in page


def test_html_of_an_empty_log():
    page = render_html(LogStats().summary())
    assert "<svg" in page and "n/a" in page


def test_a_stray_time_years_away_keeps_the_chart_within_its_bars(tmp_path):
    lines = [entry(0), entry(time="1970-01-02T00:00:00+00:00"), entry(60)]
    summary = summarize(tmp_path, lines)
    timeline = summary["timeline"]
    assert timeline["unit"].endswith(" days") and len(timeline["bars"]) <= MAX_BARS + 1
    assert sum(sum(bar[1:]) for bar in timeline["bars"]) == 3
    assert len(render_html(summary)) < 500_000


class Tables(HTMLParser):
    """Every table of a page: rows of (cell text, the cell's class)."""

    def __init__(self, page):
        super().__init__()
        self.tables, self.cell = [], None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ["", dict(attrs).get("class")]
            self.tables[-1][-1].append(self.cell)

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[0] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cell = None


def test_html_tables_have_no_empty_rows_and_sub_rows_are_indented(tmp_path):
    summary = summarize(tmp_path, [entry(), image(UUID_A), image(UUID_B, cache="regenerated")])
    page = render_html(summary)
    for table in Tables(page).tables:
        assert all(any(text.strip() for text, _ in row) for row in table), table  # no empty first row
    latency = next(table for table in Tables(page).tables if table[0][0][0] == "requests" and len(table[0]) == 6)
    names = {row[0][0]: row[0][1] for row in latency[1:]}
    assert names["GET /crops/"] is None and names["cache hit"] == names["regenerated"] == "sub"  # no leading spaces
    assert re.search(r"td\.sub\{padding-left:[1-9]", page)


def label_font():
    """Chromium's sans-serif on Debian, which draws the report; Pillow's own if it is not installed."""
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    return ImageFont.truetype(str(dejavu), 10) if dejavu.exists() else ImageFont.load_default(10)


def charts(page):
    """(width, height, [(x, y, angle, label)]) of every inline SVG chart."""
    found = []
    for svg in re.findall(r"<svg .*?</svg>", page):
        width, height = map(float, re.search(r'width="([\d.]+)" height="([\d.]+)"', svg).groups())
        labels = [(float(x), float(y), float(angle), html.unescape(text)) for x, y, angle, text in re.findall(
            r'<text transform="translate\(([\d.]+),([\d.]+)\) rotate\(([\d.]+)\)">([^<]*)</text>', svg)]
        found.append((width, height, labels))
    return found


@pytest.mark.parametrize("seconds_apart", [1, 30, 600, 7200, 86400 * 3, 86400 * 40])
def test_every_axis_label_is_drawn_inside_its_chart(tmp_path, seconds_apart):
    """The last label was cut off at the chart's right edge (and a several-days bar's at its bottom)."""
    lines = [entry(i * seconds_apart, request_time=10 ** (i % 6 - 3)) for i in range(60)] + [image(UUID_A)]
    font = label_font()
    for width, height, labels in charts(render_html(summarize(tmp_path, lines))):
        assert labels
        for x, y, angle, text in labels:
            left, top, right, bottom = font.getbbox(text, anchor="ls")  # around the baseline's start
            a = math.radians(angle)
            corners = [(x + cx * math.cos(a) - cy * math.sin(a), y + cx * math.sin(a) + cy * math.cos(a))
                       for cx in (left, right) for cy in (top, bottom)]
            assert all(0 <= cx <= width and 0 <= cy <= height for cx, cy in corners), (text, width, height, corners)
