"""Settings: every knob of the service, its default and why it exists.

This is the only module that reads the environment. The app factory builds one
Settings from `.env` plus the process environment and hands it to everything else.
"""

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def _str(raw):
    return raw.strip()


def _format(raw):
    fmt = raw.strip().lower()
    return {"jpg": "jpeg"}.get(fmt, fmt)


def _int(raw):
    return int(raw)


def _float(raw):
    return float(raw)


def _path(raw):
    return Path(raw).expanduser()


def _csv(raw):
    return tuple(part.strip().lower() for part in raw.split(",") if part.strip())


MAY_BE_ZERO = ("upstream_retries", "trusted_proxies")


def setting(default, parse, help):
    return field(default=default, metadata={"parse": parse, "help": help})


@dataclass(frozen=True)
class Settings:
    """All settings; the environment variable of each is its name in upper case."""

    public_url: str = setting(
        "", _str, "Base URL put in front of /crops/... in answers; empty: taken from the request (behind ProxyFix).")
    cache_dir: Path = setting(
        Path("var/cache"), _path, "Folder holding crops/, sources/ and locks/; nginx serves crops/ from it.")
    fathomnet_api_url: str = setting(
        "https://database.fathomnet.org/api", _str, "FathomNet API base, the variable fathomnet-py reads too.")
    allowed_image_hosts: tuple = setting(
        ("database.fathomnet.org",), _csv,
        "Hosts images may be downloaded from, so a poisoned API answer cannot aim us at an internal address.")
    connect_timeout: float = setting(3.05, _float, "Seconds to open a connection to FathomNet or the image host.")
    read_timeout: float = setting(10.0, _float, "Seconds to wait for each read from FathomNet or the image host.")
    download_timeout: float = setting(
        60.0, _float, "Seconds a whole image download may take; catches hosts that trickle bytes.")
    upstream_retries: int = setting(
        2, _int, "Extra tries, with backoff, after a connection error or a 5xx from FathomNet.")
    max_download_bytes: int = setting(200 * 1024 * 1024, _int, "Largest source image file we download.")
    max_image_pixels: int = setting(
        40_000_000, _int, "Largest source image (width x height) we decode; guards against decompression bombs.")
    max_crop_side: int = setting(8192, _int, "Longest side, in pixels, a crop may have.")
    max_crop_pixels: int = setting(16_777_216, _int, "Largest crop area (width x height), in pixels.")
    default_format: str = setting("webp", _format, "Output format when the request names none: webp, jpeg or png.")
    quality: int = setting(90, _int, "Quality (1-100) for webp and jpeg crops; png is lossless.")
    lock_timeout: float = setting(
        30.0, _float, "Seconds a request waits for another making the same file before answering 503.")
    max_body_bytes: int = setting(1024 * 1024, _int, "Largest request body; bigger is a 413.")
    cors_origins: tuple = setting(("*",), _csv, "Origins allowed to call the API from a browser, comma-separated.")
    trusted_proxies: int = setting(
        1, _int, "How many proxies in front set X-Forwarded-*; 0 when clients reach Gunicorn directly.")

    @classmethod
    def from_env(cls, environ=None, dotenv_path=".env"):
        """Build settings from a mapping (default: `.env` overlaid by the process environment)."""
        if environ is None:
            environ = {**dotenv_values(dotenv_path), **os.environ}
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.name.upper())
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError:
                raise ConfigError(f"{f.name.upper()}={raw!r} is not valid: {f.metadata['help']}") from None
        return cls(**values).checked()

    def replace(self, **changes):
        return dataclasses.replace(self, **changes).checked()

    def checked(self):
        """Refuse settings that would only fail later, per request."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not (0 < value < math.inf) and f.name not in MAY_BE_ZERO:
                raise ConfigError(f"{f.name.upper()} must be a finite number more than 0, not {value}")
            if f.name in MAY_BE_ZERO and not value >= 0:
                raise ConfigError(f"{f.name.upper()} must be 0 or more, not {value}")
        if not self.allowed_image_hosts:
            raise ConfigError("ALLOWED_IMAGE_HOSTS must name at least one host, or no image can be downloaded")
        if self.default_format not in ("webp", "jpeg", "png"):
            raise ConfigError(f"DEFAULT_FORMAT must be webp, jpeg or png, not {self.default_format!r}")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"QUALITY must be between 1 and 100, not {self.quality}")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"PUBLIC_URL must start with http:// or https://, not {self.public_url!r}")
        return self


def describe():
    """Yield (variable, default, help) for every setting, for docs and .env.example."""
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(default)
        yield f.name.upper(), default, f.metadata["help"]
