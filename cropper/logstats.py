"""`python -m cropper.logstats`, the access-log report's documented command: it lives in cropper/ops/logstats.py."""

from .ops.logstats import main

if __name__ == "__main__":
    raise SystemExit(main())
