"""Access-log statistics: what an operator asks first, read from nginx's JSON access log.

Usage: python -m cropper.logstats ACCESS_LOG [ACCESS_LOG ...] [--top N] [--html FILE] [--json]
ACCESS_LOG may be '-' (stdin) or a '.gz' file. Percentiles use the nearest-rank method: the
p-th percentile of n sorted values is the value at rank ceil(p * n / 100), always a real sample.
Besides the crop owner (for the crop-path pattern), only the standard library is used.
"""

import argparse
import bisect
import gzip
import html
import json
import math
import os
import re
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone

from .. import crops

IMAGE_PATH = re.compile(crops.url_path_pattern())  # group 1: the image's uuid
KINDS = ("crop", "batch", "image", "health", "other")
LATENCY_GROUPS = {"crop": "POST /cropper", "batch": "POST /cropper-list", "image": "GET /crops/",
                  "image_hit": "  cache hit", "image_store": "  from the store", "image_regenerated": "  regenerated"}
CACHE_STATUSES = (("hits", "hit"), ("store", "store"), ("misses", "miss"), ("regenerated", "regenerated"))
HISTOGRAM_KINDS = ("crop", "batch", "image")
HISTOGRAM_EDGES_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
HISTOGRAM_LABELS = ("<1 ms", "1-2 ms", "2-5 ms", "5-10 ms", "10-20 ms", "20-50 ms", "50-100 ms", "100-200 ms",
                    "200-500 ms", "500 ms-1 s", "1-2 s", "2-5 s", "5-10 s", ">10 s")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "other")
CLASS_COLORS = ("#4c9a2a", "#3b73b9", "#e69b00", "#c8312b", "#999999")
BAR_UNITS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))
MAX_BARS = 500


def to_number(value, kind=float):
    """A finite int or float from a log field, or None."""
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def parse_time(value):
    """A timezone-aware datetime from an ISO 8601 field, or None; naive times are taken as UTC."""
    try:
        moment = datetime.fromisoformat(value)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        year = moment.astimezone(timezone.utc).year
    except (TypeError, ValueError, OverflowError):
        return None
    # At the ends of datetime's range a time (or the start of its bar) has no UTC equivalent: no log's.
    return moment if 1 < year < 9999 else None


def request_kind(method, uri):
    """Which part of the service a request used: crop, batch, image, health or other."""
    path = uri.split("?", 1)[0]
    if method == "POST" and path in ("/cropper", "/cropper/"):
        return "crop"
    if method == "POST" and path in ("/cropper-list", "/cropper-list/"):
        return "batch"
    if method in ("GET", "HEAD") and path.startswith("/crops/"):
        return "image"
    if path in ("/healthz", "/readyz"):
        return "health"
    return "other"


def status_class(status):
    """'2xx' .. '5xx' for a status, 'other' for anything else."""
    return f"{status // 100}xx" if status is not None and 200 <= status < 600 else "other"


def status_order(status):
    """Sort key of by_status keys: numbers in numeric order, then '-'."""
    return (not status.isdigit(), len(status), status)


def upstream_tries(entry):
    """How many upstreams nginx tried: fields may be '', '-', or lists like '0.010, 0.004'."""
    def tries(field):
        return [v for v in re.split(r"[,:]", str(entry.get(field) or "")) if v.strip() not in ("", "-")]
    return max(len(tries("upstream_status")), len(tries("upstream_response_time")))


def percentile(sorted_values, p):
    """Nearest-rank percentile of already sorted values."""
    rank = -(-p * len(sorted_values) // 100)  # integer ceil, so 95% of 100 is exactly rank 95
    return sorted_values[max(rank, 1) - 1]


def latency_summary(values_ms):
    """Count, p50, p95, p99 and max of latencies in ms (None when there are none)."""
    values = sorted(values_ms)
    result = {"count": len(values)}
    for p in (50, 95, 99):
        result[f"p{p}"] = round(percentile(values, p), 3) if values else None
    result["max"] = round(values[-1], 3) if values else None
    return result


def histogram(values_ms):
    """Counts of latencies per log-scale bucket, as [label, count] pairs."""
    counts = [0] * (len(HISTOGRAM_EDGES_MS) + 1)
    for value in values_ms:
        counts[bisect.bisect_right(HISTOGRAM_EDGES_MS, value)] += 1
    return [[label, count] for label, count in zip(HISTOGRAM_LABELS, counts)]


def top(counter, name, n):
    """The n largest counts as [{name: key, 'requests': count}], ties in key order."""
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [{name: key, "requests": count} for key, count in ranked]


def share(count, total):
    """count / total rounded, or None when total is 0."""
    return round(count / total, 4) if total else None


class LogStats:
    """Accumulates counts over log entries; memory grows with distinct images, clients and minutes."""

    def __init__(self, top=10):
        self.top = top
        self.requests = self.unparsed = self.bytes = 0
        self.first = self.last = None
        self.by_status, self.by_class, self.by_kind = Counter(), Counter(), Counter()
        self.cache, self.upstream = Counter(), Counter()
        self.images, self.clients = Counter(), Counter()
        self.regenerated_crops = set()
        self.latency = {group: [] for group in LATENCY_GROUPS}
        self.per_minute = {}  # epoch minute -> counts per status class
        self.per_second = {}  # None once there are too many seconds for per-second bars

    def add(self, entry):
        """Count one decoded log line; anything that is not a JSON object counts as unparsed."""
        if not isinstance(entry, dict):
            self.unparsed += 1
            return
        self.requests += 1
        status = to_number(entry.get("status"), int)
        self.by_status["-" if status is None else str(status)] += 1
        self.by_class[status_class(status)] += 1
        self.bytes += to_number(entry.get("bytes"), int) or 0
        self.clients[str(entry.get("client") or "-")] += 1
        cache = str(entry.get("cache") or "")
        if cache:
            self.cache[cache] += 1
        tries = upstream_tries(entry)
        self.upstream["requests"] += tries > 0
        self.upstream["retried"] += tries > 1
        self._add_time(parse_time(entry.get("time")), status_class(status))
        self._add_request(str(entry.get("method") or ""), str(entry.get("uri") or ""), cache,
                          to_number(entry.get("request_time")))

    def _add_request(self, method, uri, cache, seconds):
        """Count the request's kind, its latency and, for crop images, which image it was."""
        kind = request_kind(method, uri)
        self.by_kind[kind] += 1
        groups = [kind] if kind in LATENCY_GROUPS else []
        if kind == "image":
            if f"image_{cache}" in LATENCY_GROUPS:
                groups.append(f"image_{cache}")
            match = IMAGE_PATH.fullmatch(uri.split("?", 1)[0])
            if match:
                self.images[match[1]] += 1
                if cache == "regenerated":
                    self.regenerated_crops.add(match[0].lower())
        for group in groups if seconds is not None else ():
            self.latency[group].append(seconds * 1000)

    def _add_time(self, moment, klass):
        """Track the time span and the requests per minute (and per second while the span is short)."""
        if moment is None:
            return
        self.first = moment if self.first is None else min(self.first, moment)
        self.last = moment if self.last is None else max(self.last, moment)
        epoch, index = math.floor(moment.timestamp()), STATUS_CLASSES.index(klass)
        self.per_minute.setdefault(epoch // 60, [0] * len(STATUS_CLASSES))[index] += 1
        if self.per_second is not None:
            self.per_second.setdefault(epoch, [0] * len(STATUS_CLASSES))[index] += 1
            if len(self.per_second) > MAX_BARS:
                self.per_second = None  # the span is now too long to ever draw per-second bars

    def _timeline(self):
        """Requests per bar and status class, the bar width chosen so the span gives at most ~MAX_BARS."""
        if self.first is None:
            return {"unit": None, "classes": list(STATUS_CLASSES), "bars": []}
        span = self.last.timestamp() - self.first.timestamp()
        usable = [(u, w) for u, w in BAR_UNITS if w > 1 or self.per_second is not None]
        unit, width = next(((u, w) for u, w in usable if span // w + 1 <= MAX_BARS), (None, None))
        if width is None:  # longer than MAX_BARS days (a stray old time, say): several days a bar
            days = int(span // (86400 * (MAX_BARS - 1))) + 1
            unit, width = f"{days} days", days * 86400
        source = self.per_second.items() if width == 1 else ((m * 60, c) for m, c in self.per_minute.items())
        tz = self.first.tzinfo
        offset = int(self.first.utcoffset().total_seconds())  # bars start on the log's own hours and days
        bars = {}
        for second, counts in source:
            start = (second + offset) // width * width - offset
            bars[start] = [a + b for a, b in zip(bars.get(start, [0] * len(counts)), counts)]
        first, last = min(bars), max(bars)
        return {"unit": unit, "classes": list(STATUS_CLASSES), "bars": [
            [datetime.fromtimestamp(start, tz).isoformat(), *bars.get(start, [0] * len(STATUS_CLASSES))]
            for start in range(first, last + width, width)]}

    def summary(self):
        """Every reported number as a JSON-ready dict."""
        counts = {name: self.cache[status] for name, status in CACHE_STATUSES}
        served = counts["hits"] + counts["store"]  # store: a crop made before, read from the shared bucket
        return {
            "time": {"first": self.first and self.first.isoformat(), "last": self.last and self.last.isoformat(),
                     "span_seconds": self.first and (self.last - self.first).total_seconds()},
            "requests": self.requests, "unparsed": self.unparsed, "bytes": self.bytes,
            "by_status": {k: self.by_status[k] for k in sorted(self.by_status, key=status_order)},
            "by_kind": {k: self.by_kind[k] for k in KINDS},
            "errors": {c: {"count": self.by_class[c], "share": share(self.by_class[c], self.requests)}
                       for c in ("4xx", "5xx")},
            "cache": {**counts, "hit_ratio": share(served, sum(counts.values()))},
            "regenerated": {"requests": counts["regenerated"], "distinct_crops": len(self.regenerated_crops)},
            "upstream": {"requests": self.upstream["requests"], "retried": self.upstream["retried"]},
            "percentile_method": "nearest-rank",
            "latency_ms": {g: latency_summary(v) for g, v in self.latency.items()},
            "top_images": top(self.images, "uuid", self.top),
            "top_clients": top(self.clients, "client", self.top),
            "histograms": {k: histogram(self.latency[k]) for k in HISTOGRAM_KINDS},
            "timeline": self._timeline(),
        }


def open_log(path):
    """Open a log as text: '-' is stdin, '*.gz' is gunzipped; undecodable bytes are replaced."""
    if path == "-":
        return open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_entries(paths):
    """Yield each line of the logs decoded from JSON, or None for a line that is not JSON."""
    for path in paths:
        with open_log(path) as lines:
            for line in lines:
                try:
                    yield json.loads(line)
                except (ValueError, RecursionError):
                    yield None


def pct(value):
    """A ratio as a percentage, or 'n/a'."""
    return "n/a" if value is None else f"{value * 100:.1f}%"


def num(value):
    """A number for a table cell, or 'n/a'."""
    return "n/a" if value is None else f"{value:g}"


def latency_rows(summary):
    """Rows of the latency table: name, count, p50, p95, p99, max."""
    return [[name, str(s["count"]), *(num(s[k]) for k in ("p50", "p95", "p99", "max"))]
            for name, s in ((LATENCY_GROUPS[g], summary["latency_ms"][g]) for g in LATENCY_GROUPS)]


def render_text(summary):
    """The summary as a compact plain-text report."""
    t, cache, errors = summary["time"], summary["cache"], summary["errors"]
    span = "" if t["first"] is None else f" ({timedelta(seconds=round(t['span_seconds']))})"
    lines = [
        f"Span       {t['first'] or 'n/a'} .. {t['last'] or 'n/a'}{span}",
        f"Requests   {summary['requests']}  (unparsed lines: {summary['unparsed']})",
        "Status     " + "  ".join(f"{k}: {v}" for k, v in summary["by_status"].items()),
        "Errors     " + "  ".join(f"{c}: {e['count']} ({pct(e['share'])})" for c, e in errors.items()),
        "Kinds      " + "  ".join(f"{k}: {v}" for k, v in summary["by_kind"].items()),
        f"Cache      hits {cache['hits']}, store {cache['store']}, misses {cache['misses']},"
        f" regenerated {cache['regenerated']};"
        f" hit ratio {pct(cache['hit_ratio'])}",
        f"Regenerated crops: {summary['regenerated']['requests']} requests,"
        f" {summary['regenerated']['distinct_crops']} distinct crops",
        f"Upstream   {summary['upstream']['requests']} requests reached the app,"
        f" {summary['upstream']['retried']} retried on another upstream",
        "",
        f"{'Latency ms (nearest-rank)':<26}{'count':>8}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}",
    ]
    lines += [f"  {row[0]:<24}{row[1]:>8}" + "".join(f"{c:>10}" for c in row[2:]) for row in latency_rows(summary)]
    lines += ["", f"Top {len(summary['top_images'])} images (GET /crops/)"]
    lines += [f"  {i['requests']:>8}  {i['uuid']}" for i in summary["top_images"]]
    lines += ["", f"Top {len(summary['top_clients'])} clients"]
    lines += [f"  {c['requests']:>8}  {c['client']}" for c in summary["top_clients"]]
    return "\n".join(lines)


def html_cell(value):
    """A table cell, escaped; a name indented with spaces (a sub-row in the text report) is indented by CSS."""
    text = str(value)
    return f'<td class="sub">{html.escape(text.lstrip())}</td>' if text[:1] == " " else f"<td>{html.escape(text)}</td>"


def html_table(headers, rows):
    """An HTML table, every cell escaped; without headers, no header row (names are in the first column)."""
    head = f"<tr>{''.join(f'<th>{html.escape(str(h))}</th>' for h in headers)}</tr>" if headers else ""
    body = "".join("<tr>" + "".join(html_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


# A tick label runs down to the right at TICK_ANGLE degrees from its bar; at font-size 10 a character
# is at most ~6.5 px wide (DejaVu Sans, Chromium's sans-serif on Debian): room is left for the longest.
TICK_ANGLE, CHAR_WIDTH, FONT_SIZE = 40, 6.5, 10


def svg_bars(bars, colors, names, tick_every=1, plot_w=710, plot_h=140):
    """An inline SVG chart of bars given as (label, [count per series]), the series stacked."""
    longest, angle = max((len(label) for label, _ in bars), default=0) * CHAR_WIDTH, math.radians(TICK_ANGLE)
    left, top, right = 40, 20, max(10, math.ceil(longest * math.cos(angle)))
    axis = top + plot_h
    width, height = left + plot_w + right, axis + 6 + math.ceil(longest * math.sin(angle) + FONT_SIZE)
    peak = max((sum(counts) for _, counts in bars), default=0) or 1
    step = plot_w / max(len(bars), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="{FONT_SIZE}">',
             f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{peak}</text>',
             f'<line x1="{left}" y1="{axis}" x2="{left + plot_w}" y2="{axis}" stroke="#555"/>']
    for i, (label, counts) in enumerate(bars):
        x, y = left + i * step, axis
        tip = html.escape(f"{label}: " + ", ".join(f"{c} {n}" for n, c in zip(names, counts)))
        for count, color in zip(counts, colors):
            h = count / peak * plot_h
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 1, 0.5):.1f}" height="{h:.1f}"'
                         f' fill="{color}"><title>{tip}</title></rect>')
        if i % tick_every == 0:
            parts.append(f'<text transform="translate({x + step / 2:.1f},{axis + 6}) rotate({TICK_ANGLE})">'
                         f"{html.escape(label)}</text>")
    return "".join(parts) + "</svg>"


def render_html(summary):
    """The summary as a self-contained HTML page with inline SVG charts."""
    t, cache, timeline = summary["time"], summary["cache"], summary["timeline"]
    overview = [["first", t["first"] or "n/a"], ["last", t["last"] or "n/a"], ["requests", summary["requests"]],
                ["unparsed lines", summary["unparsed"]], ["hit ratio", pct(cache["hit_ratio"])],
                *[[f"cache {k}", cache[k]] for k, _ in CACHE_STATUSES],
                *[[f"{c} errors", f"{e['count']} ({pct(e['share'])})"] for c, e in summary["errors"].items()],
                ["regenerated crops (distinct)", summary["regenerated"]["distinct_crops"]],
                ["upstream retried", summary["upstream"]["retried"]]]
    sections = [
        "<h2>Overview</h2>" + html_table([], overview),
        "<h2>Status</h2>" + html_table(["status", "requests"], summary["by_status"].items()),
        "<h2>Latency (ms, nearest-rank percentiles)</h2>"
        + html_table(["requests", "count", "p50", "p95", "p99", "max"], latency_rows(summary)),
    ]
    for kind, buckets in summary["histograms"].items():
        sections.append(f"<h3>Latency histogram: {html.escape(LATENCY_GROUPS[kind])}</h3>"
                        + svg_bars([(label, [count]) for label, count in buckets], ["#3b73b9"], ["requests"]))
    # a label says what the bar's unit needs: its time of day, or its date (for "day" and "N days")
    short = {"second": slice(11, 19), "minute": slice(11, 16), "hour": slice(5, 16)}
    bars = [(row[0][short.get(timeline["unit"], slice(0, 10))], row[1:]) for row in timeline["bars"]]
    sections.append(f"<h2>Requests per {html.escape(timeline['unit'] or 'minute')}</h2>"
                    + svg_bars(bars, CLASS_COLORS, timeline["classes"], tick_every=max(len(bars) // 12, 1))
                    + "<p>" + " ".join(f'<span style="color:{c}">&#9632;</span> {n}'
                                       for n, c in zip(timeline["classes"], CLASS_COLORS)) + "</p>")
    sections.append("<h2>Top images</h2>" + html_table(
        ["requests", "uuid"], [[i["requests"], i["uuid"]] for i in summary["top_images"]]))
    sections.append("<h2>Top clients</h2>" + html_table(
        ["requests", "client"], [[c["requests"], c["client"]] for c in summary["top_clients"]]))
    style = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}td.sub{padding-left:2em}"
             "svg{display:block}")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Cropper access log report</title>"
            f"<style>{style}</style></head><body><h1>Cropper access log report</h1>"
            + "\n".join(sections) + "</body></html>\n")


def main(argv=None):
    """Read the logs, print the report, optionally write the HTML; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m cropper.logstats", description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", metavar="ACCESS_LOG", help="nginx JSON access log, '-' or *.gz")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="how many images and clients to list")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    args = parser.parse_args(argv)
    if args.top < 0:
        parser.error("--top must be 0 or more")
    missing = [path for path in args.logs if path != "-" and not os.path.exists(path)]
    if missing:
        print(f"logstats: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    stats = LogStats(top=args.top)
    for path in args.logs:
        try:
            for entry in read_entries([path]):
                stats.add(entry)
        except (OSError, EOFError) as exc:  # unreadable, a directory, a corrupt or truncated .gz
            print(f"logstats: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    summary = stats.summary()
    print(json.dumps(summary) if args.json else render_text(summary))
    if args.html:
        with open(args.html, "w", encoding="utf-8") as out:
            out.write(render_html(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
