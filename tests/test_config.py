"""Settings: parsing the environment and `.env`, and refusing values the service cannot run with."""

import dataclasses
from pathlib import Path

import pytest

from cropper.config import MAY_BE_ZERO, UNDER_VAR_DIR, ConfigError, Settings, describe, env_example

VARIABLES = [f.name.upper() for f in dataclasses.fields(Settings)]
NUMBERS = [f.name.upper() for f in dataclasses.fields(Settings) if f.type in (int, float)]


@pytest.fixture
def clean_environ(monkeypatch):
    """No setting comes from the environment the tests happen to run in."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_an_empty_environment_gives_the_defaults():
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("variable, raw, field, expected", [
    ("PUBLIC_URL", "  https://crops.example.org  ", "public_url", "https://crops.example.org"),
    ("CACHE_DIR", "/srv/cache", "cache_dir", Path("/srv/cache")),
    ("FATHOMNET_API_URL", "http://127.0.0.1:8001/api", "fathomnet_api_url", "http://127.0.0.1:8001/api"),
    ("CONNECT_TIMEOUT", "0.5", "connect_timeout", 0.5),
    ("READ_TIMEOUT", "2", "read_timeout", 2.0),
    ("UPSTREAM_RETRIES", " 4 ", "upstream_retries", 4),
    ("MAX_DOWNLOAD_BYTES", "1000", "max_download_bytes", 1000),
    ("MAX_CROP_SIDE", "512", "max_crop_side", 512),
    ("DEFAULT_FORMAT", "png", "default_format", "png"),
    ("DEFAULT_FORMAT", " JPG ", "default_format", "jpeg"),  # the alias request bodies accept
    ("QUALITY", "75", "quality", 75),
    ("LOCK_TIMEOUT", "1.5", "lock_timeout", 1.5),
    ("CORS_ORIGINS", "https://a.org,https://b.org", "cors_origins", ("https://a.org", "https://b.org")),
    ("TRUSTED_PROXIES", "0", "trusted_proxies", 0),
])
def test_each_type_is_parsed(variable, raw, field, expected):
    value = getattr(Settings.from_env({variable: raw}), field)
    assert value == expected
    assert type(value) is type(expected)


def test_cache_dir_expands_the_home_folder():
    assert Settings.from_env({"CACHE_DIR": "~/crops"}).cache_dir == Path.home() / "crops"


def test_allowed_image_hosts_is_a_lower_cased_comma_list():
    settings = Settings.from_env({"ALLOWED_IMAGE_HOSTS": " Database.FathomNet.org, ,IMAGES.example.com ,"})
    assert settings.allowed_image_hosts == ("database.fathomnet.org", "images.example.com")


@pytest.mark.parametrize("variable", VARIABLES)
def test_an_empty_string_means_the_default(variable):
    assert Settings.from_env({variable: ""}) == Settings()


def test_variable_names_are_upper_case_only():
    assert Settings.from_env({"quality": "5"}).quality == Settings().quality


@pytest.mark.parametrize("variable, raw", [
    ("QUALITY", "abc"),
    ("QUALITY", "1.5"),
    ("QUALITY", " "),
    ("QUALITY", "0"),
    ("QUALITY", "101"),
    ("UPSTREAM_RETRIES", "two"),
    ("READ_TIMEOUT", "10s"),
    ("MAX_DOWNLOAD_BYTES", "200MB"),
    ("DEFAULT_FORMAT", "gif"),
    ("PUBLIC_URL", "ftp://x"),
    ("PUBLIC_URL", "crops.example.org"),
])
def test_a_bad_value_is_a_config_error_naming_the_variable(variable, raw):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize("variable", NUMBERS)
def test_a_negative_number_is_a_config_error(variable):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: "-1"})


@pytest.mark.parametrize("variable", NUMBERS)
def test_zero_is_refused_where_it_cannot_work(variable):
    if variable.lower() in MAY_BE_ZERO:  # 0 means none, automatic, or off
        assert getattr(Settings.from_env({variable: "0"}), variable.lower()) == 0
    else:
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env({variable: "0"})


@pytest.mark.parametrize("variable, raw", [
    ("READ_TIMEOUT", "nan"),
    ("CONNECT_TIMEOUT", "nan"),
    ("READ_TIMEOUT", "inf"),
    ("CONNECT_TIMEOUT", "1e400"),
])
def test_a_timeout_requests_cannot_use_is_a_config_error(variable, raw):
    """checked() promises to refuse settings that would only fail later, per request: with an
    infinite connect or read timeout every FathomNet call raises OverflowError (a 500)."""
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize("variable", ["CACHE_PRUNE_INTERVAL", "TEMP_GRACE"])
@pytest.mark.parametrize("raw", ["inf", "1e400", "nan"])
def test_a_setting_that_may_be_0_must_still_be_finite(variable, raw):
    """CACHE_PRUNE_INTERVAL=inf pruned once and never again; a TEMP_GRACE of inf kept killed writers' temp files."""
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: raw})


def test_replace_checks_the_new_settings():
    settings = Settings()
    assert settings.replace(quality=10).quality == 10
    assert settings.quality == 90
    with pytest.raises(ConfigError, match="QUALITY"):
        settings.replace(quality=0)


@pytest.mark.parametrize("environ, says", [
    ({"CACHE_BACKEND": "nfs"}, "CACHE_BACKEND must be file or s3"),
    ({"CACHE_BACKEND": "s3", "CLUSTER_HOSTS": "a:80,b:80", "CLUSTER_SELF": "c:80", "CLUSTER_KEY": "k"},
     "CLUSTER_SELF must be one of them"),
    ({"CACHE_BACKEND": "s3", "CLUSTER_HOSTS": "a:80,b:80", "CLUSTER_SELF": "a:80"}, "CLUSTER_KEY must be set"),
    ({"CLUSTER_HOSTS": "a:80,b:80", "CLUSTER_SELF": "a:80", "CLUSTER_KEY": "k"}, "needs CACHE_BACKEND=s3"),
])
def test_a_cluster_or_store_that_cannot_work_is_refused_at_start(environ, says):
    with pytest.raises(ConfigError, match=says):
        Settings.from_env(environ)


def test_a_cluster_host_lists_every_host_and_itself():
    settings = Settings.from_env({"CACHE_BACKEND": "s3", "CLUSTER_HOSTS": "Host1:8080, host2:8080",
                                  "CLUSTER_SELF": "host1:8080", "CLUSTER_KEY": "k", "S3_PRUNER": "yes"})
    assert settings.cluster_hosts == ("host1:8080", "host2:8080") and settings.s3_pruner is True


def test_cluster_self_is_read_as_the_hosts_are_whatever_its_case():
    """CLUSTER_HOSTS is lower-cased; CLUSTER_SELF, the same host spelt the same way, was not, and was refused."""
    settings = Settings.from_env({"CACHE_BACKEND": "s3", "CLUSTER_HOSTS": "Host1:8080,host2:8080",
                                  "CLUSTER_SELF": "Host1:8080", "CLUSTER_KEY": "k"})
    assert settings.cluster_self == "host1:8080" and settings.cluster_self in settings.cluster_hosts


def test_one_setting_keeps_the_hosts_of_one_machine_apart():
    """Each host's cache, metrics, access log (and nginx's run files, serve.run_dir) were fixed relative to
    the working folder: hosts on one machine each needed a folder of their own to start from."""
    assert (Settings().cache_dir, Settings().metrics_dir, Settings().access_log) == \
        (Path("var/cache"), Path("var/metrics"), Path("var/log/access.log"))  # as they were
    assert Settings().dataset_queue == "var/datasets/queue.sqlite3"
    host = Settings.from_env({"VAR_DIR": "/srv/h"})
    assert (host.cache_dir, host.metrics_dir, host.access_log, host.dataset_queue) == \
        (Path("/srv/h/cache"), Path("/srv/h/metrics"), Path("/srv/h/log/access.log"), "/srv/h/datasets/queue.sqlite3")
    shared = Settings.from_env({"VAR_DIR": "/srv/h", "DATASET_QUEUE": "redis://127.0.0.1:6379/0"})
    assert shared.dataset_queue == "redis://127.0.0.1:6379/0"  # a queue every host shares stays as it is
    chosen = Settings.from_env({"VAR_DIR": "/srv/h", "CACHE_DIR": "/data/cache", "ACCESS_LOG": "/var/log/c.log"})
    assert (chosen.cache_dir, chosen.metrics_dir, chosen.access_log) == \
        (Path("/data/cache"), Path("/srv/h/metrics"), Path("/var/log/c.log"))  # what is set stays set
    moved = chosen.replace(var_dir=Path("/srv/g"))
    assert (moved.cache_dir, moved.metrics_dir) == (Path("/data/cache"), Path("/srv/g/metrics"))


def test_the_front_needs_only_the_hosts_of_the_cluster_settings():
    """Rendering the front demanded CLUSTER_SELF, CLUSTER_KEY and CACHE_BACKEND=s3, which it does not use."""
    front = Settings.from_env({"CLUSTER_HOSTS": "127.0.0.1:8101,127.0.0.1:8102", "FRONT_SOURCE_ADDRESS": "127.0.0.2"},
                              front=True)
    assert front.cluster_hosts == ("127.0.0.1:8101", "127.0.0.1:8102") and front.front_source_address == "127.0.0.2"
    with pytest.raises(ConfigError, match="CLUSTER_SELF must be one of them"):
        Settings.from_env({"CLUSTER_HOSTS": "127.0.0.1:8101", "CACHE_BACKEND": "s3"})  # a host still needs them
    with pytest.raises(ConfigError, match="FRONT_SOURCE_ADDRESS"):
        Settings.from_env({"FRONT_SOURCE_ADDRESS": "localhost"}, front=True)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().quality = 5


# -- .env and the process environment


def test_dotenv_file_is_read(tmp_path, clean_environ):
    dotenv = tmp_path / ".env"
    dotenv.write_text("QUALITY=42\nALLOWED_IMAGE_HOSTS=A.org,b.org\n# a comment\nPUBLIC_URL='https://x.org'\n")
    settings = Settings.from_env(dotenv_path=dotenv)
    assert settings.quality == 42
    assert settings.allowed_image_hosts == ("a.org", "b.org")
    assert settings.public_url == "https://x.org"


def test_the_environment_wins_over_the_dotenv_file(tmp_path, clean_environ):
    dotenv = tmp_path / ".env"
    dotenv.write_text("QUALITY=42\nDEFAULT_FORMAT=png\n")
    clean_environ.setenv("QUALITY", "7")
    settings = Settings.from_env(dotenv_path=dotenv)
    assert settings.quality == 7
    assert settings.default_format == "png"


def test_a_missing_dotenv_file_means_the_environment_alone(tmp_path, clean_environ):
    clean_environ.setenv("QUALITY", "7")
    assert Settings.from_env(dotenv_path=tmp_path / "missing.env") == Settings(quality=7)


def test_a_bad_value_in_the_dotenv_file_is_a_config_error(tmp_path, clean_environ):
    dotenv = tmp_path / ".env"
    dotenv.write_text("LOCK_TIMEOUT=soon\n")
    with pytest.raises(ConfigError, match="LOCK_TIMEOUT"):
        Settings.from_env(dotenv_path=dotenv)


# -- describe()


def test_describe_yields_every_field_with_its_default_and_help():
    described = {name: (default, help) for name, default, help in describe()}
    assert list(described) == VARIABLES
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        default, help = described[field.name.upper()]
        assert help and help == field.metadata["help"]
        expected = getattr(defaults, field.name)
        if field.name in UNDER_VAR_DIR:
            expected = ""  # left empty: under VAR_DIR
            assert help.endswith(f"empty: VAR_DIR/{UNDER_VAR_DIR[field.name]}.")
        elif isinstance(expected, tuple):
            expected = ",".join(expected)
        elif isinstance(expected, bool):
            expected = str(expected).lower()  # as an .env file spells it
        assert default == expected


def test_described_defaults_parse_back_to_the_defaults():
    """So describe() can write a .env.example that means the same as no .env."""
    environ = {name: str(default) for name, default, _ in describe()}
    assert Settings.from_env(environ) == Settings()


def test_env_example_documents_every_setting_with_its_default():
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    assert example == env_example(), "regenerate: python -m cropper env-example > .env.example"
    documented = dict(line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#"))
    assert documented == {name: str(default) for name, default, _ in describe()}
