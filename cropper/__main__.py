"""Operator commands: `python -m cropper serve`, `python -m cropper env-example`."""

import argparse

from .config import Settings, env_example
from .serve import serve


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cropper", description="FathomNet Cropper operator commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run nginx + Gunicorn (Gunicorn alone without nginx) until Ctrl-C")
    commands.add_parser("env-example", help="print every setting with its default, as in .env.example")
    args = parser.parse_args(argv)
    if args.command == "env-example":
        print(env_example(), end="")
        return 0
    return serve(Settings.from_env())


if __name__ == "__main__":
    raise SystemExit(main())
