"""`python -m ui` (`loupe-ui`): start the Streamlit app on 127.0.0.1, owning the data home or going through its owner.

    python -m ui                                   search the library in ~/.loupe (or $LOUPE_HOME)
    python -m ui --watch ~/Pictures                index ~/Pictures, follow its changes, and search it
    python -m ui --home /data/loupe --port 8600
    python -m ui --host 0.0.0.0                    reachable from other machines (no login: think twice)

Streamlit's own CLI does the serving; this wrapper only picks safe defaults (loopback, no usage statistics, no
source-file watcher) and passes the app's flags after `--`.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from indexer.settings import DEFAULT_MODEL_HELP

APP = Path(__file__).with_name("app.py")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ui", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--home", help="data home (default: $LOUPE_HOME or ~/.loupe)")
    p.add_argument("--watch", nargs="+", default=[], metavar="FOLDER",
                   help="index these folders and follow their changes (handed to the owner if one runs)")
    p.add_argument("--model", help=f"model preset ({DEFAULT_MODEL_HELP})")
    p.add_argument("--device", help="cpu or cuda (default: CUDA when available)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    return p


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int) -> str | None:
    """The UI has no login: listening beyond loopback hands the library (and "index this folder") to the network."""
    if is_loopback(host):
        return None
    return (f"warning: the UI will listen on {host}:{port}, reachable from other machines. It has no login: anyone "
            "who can reach it can browse your photos and index folders. Keep the default 127.0.0.1 (and use an SSH "
            "tunnel) unless you trust that network.")


def streamlit_args(args: argparse.Namespace) -> list[str]:
    """`streamlit run` arguments: server options, then `--` and the app's own flags."""
    out = ["run", str(APP), "--server.address", args.host, "--server.port", str(args.port),
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
           "--browser.serverAddress", args.host if is_loopback(args.host) else "localhost"]
    if args.no_browser:
        out += ["--server.headless", "true"]
    app_flags: list[str] = []
    if args.home:
        app_flags += ["--home", str(Path(args.home).expanduser().resolve())]
    for folder in args.watch:
        app_flags += ["--watch", str(Path(folder).expanduser().resolve())]
    for flag in ("model", "device"):
        if getattr(args, flag):
            app_flags += [f"--{flag}", getattr(args, flag)]
    return out + (["--", *app_flags] if app_flags else [])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = [f for f in args.watch if not Path(f).expanduser().is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    warning = exposure_warning(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr)
    argv = streamlit_args(args)
    from ui.state import preopen

    print("opening the data home…", file=sys.stderr)
    opened = preopen(app_flags(argv))
    ignored = [f"--{flag}" for flag in ("model", "device") if getattr(args, flag)]
    if opened is not None and opened.mode == "owner" and ignored:
        print(f"warning: {', '.join(ignored)} cannot take effect: process {opened.client.pid} owns the data home and "
              "searches with its own model (stop it, or start it with these flags)", file=sys.stderr)
    from streamlit.web import cli as streamlit_cli

    return streamlit_cli.main(args=argv, prog_name="streamlit", standalone_mode=True)


def app_flags(argv: list[str]) -> list[str]:
    """The app's own flags: what follows `--` in the streamlit arguments."""
    return argv[argv.index("--") + 1:] if "--" in argv else []


if __name__ == "__main__":
    sys.exit(main())
