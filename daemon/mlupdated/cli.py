"""The ``mlupdated`` command line: the parser of DESIGN.md's contract; each sub-command
runs ``commands/<name>.py``.

Exit codes: 0 ok, 1 some inputs failed, 2 usage or configuration error (and any
other error we raise on purpose). Errors print one line naming the file and the
reason; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable, Sequence

from . import __version__
from .errors import MlupdatedError
from .paths import bundled_model_path

__all__ = ["build_parser", "bundled_model_path", "main"]

EXIT_OK = 0
EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2

WORKSPACE_ENV = "MLUPDATED_WORKSPACE"


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    """The ``run`` of ``commands/<name>.py``, imported only when that command runs."""

    def run(args: argparse.Namespace) -> int:
        module = importlib.import_module(f"{__package__}.commands.{name}")
        return int(module.run(args))

    return run


# --- parser ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line on a usage error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise SystemExit(f"mlupdated: error: {message}") from None


_RESIZE_CHOICES = ("scaleFill", "centerCrop", "scaleFit")
_RESIZE_HELP = "how images are fitted to the model's input size (default: scaleFill)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlupdated",
        description="Keep a Core ML image classifier personal to its owner.",
    )
    parser.add_argument("--version", action="version", version=f"mlupdated {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    # In this order: it is the order of ``mlupdated --help``.
    _add_predict(sub)
    _add_inspect(sub)
    _add_update(sub)
    _add_workspace_commands(sub)
    _add_web(sub)
    _add_service(sub)
    return parser


def _workspace_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workspace",
        metavar="DIR",
        help=f"workspace directory (default: ${WORKSPACE_ENV}, else ~/mlupdated)",
    )


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify images, or run a model on any inputs")
    p.add_argument("--model", metavar="PATH", help="model to use (default: see README)")
    _workspace_option(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--input",
        action="append",
        metavar="NAME=VALUE",
        help="an input: a number, a string, JSON (array or object), FILE.npy or an image "
        "path (repeat for each input; `mlupdated inspect` shows an example)",
    )
    p.add_argument(
        "--features",
        metavar="FILE",
        help="a file of JSON objects, one example per line ('-': standard input)",
    )
    p.add_argument(
        "--out-dir",
        metavar="DIR",
        help="with --json: write array outputs as DIR/NAME.npy (DIR/LINE/NAME.npy for "
        "--features) and print their paths",
    )
    p.add_argument("--resize", choices=_RESIZE_CHOICES, default="scaleFill", help=_RESIZE_HELP)
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.set_defaults(func=_command("predict"))


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="describe a model and check it for updates")
    p.add_argument("--model", metavar="PATH")
    _workspace_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("inspect"))


def _add_update(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("update", help="run the Core ML update task on a folder of labels")
    p.add_argument("--model", metavar="PATH", help="updatable model (default: the bundled one)")
    p.add_argument("--data", metavar="DIR", required=True, help="folder of <Label>/ subfolders")
    p.add_argument("--out", metavar="PATH", required=True, help="where to write the new model")
    p.add_argument("--epochs", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--momentum", type=float)
    p.add_argument("--beta1", type=float)
    p.add_argument("--beta2", type=float)
    p.add_argument("--eps", type=float)
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--rehearsal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train on the model's rehearsal set beside the data, if it carries one (default: on)",
    )
    p.add_argument("--cache-dir", metavar="DIR", help="feature cache (default: user cache)")
    p.add_argument("--resize", choices=_RESIZE_CHOICES, default="scaleFill", help=_RESIZE_HELP)
    p.add_argument("--json", action="store_true", help="one JSON object per progress event")
    p.set_defaults(func=_command("update"))


def _add_workspace_commands(sub: argparse._SubParsersAction) -> None:
    """init, run, status, rollback, repair and the daemon controls."""
    p = sub.add_parser("init", help="create a workspace")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--model", metavar="PATH", help="initial model (default: the bundled one)")
    p.set_defaults(func=_command("init"))

    p = sub.add_parser("run", help="run the daemon in the foreground")
    _workspace_option(p)
    p.set_defaults(func=_command("run"))

    p = sub.add_parser("status", help="show the daemon's state")
    _workspace_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("status"))

    p = sub.add_parser("rollback", help="make an earlier model version current")
    _workspace_option(p)
    p.add_argument("--to", type=int, metavar="VERSION", help="version (default: the previous)")
    p.set_defaults(func=_command("rollback"))

    p = sub.add_parser("repair", help="rebuild a lost or broken model manifest")
    _workspace_option(p)
    p.set_defaults(func=_command("repair"))

    for name, text in (
        ("update-now", "ask the running daemon to update now"),
        ("pause", "pause scheduled updates"),
        ("resume", "resume scheduled updates"),
    ):
        p = sub.add_parser(name, help=text)
        _workspace_option(p)
        p.set_defaults(func=_command("control"), action=name)


def _add_web(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="serve the review page for a workspace")
    _workspace_option(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: any free one)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other machines can reach (prefer an SSH tunnel)",
    )
    p.set_defaults(func=_command("web"))


def _add_service(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("service", help="install or remove the system service")
    p.add_argument("action", choices=["install", "uninstall", "print"])
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--user", dest="scope", action="store_const", const="user")
    scope.add_argument("--system", dest="scope", action="store_const", const="system")
    p.add_argument(
        "--web", action="store_true", help="the review page's unit (mlupdated web) instead"
    )
    _workspace_option(p)
    p.set_defaults(func=_command("service"), scope=None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return EXIT_USAGE
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except MlupdatedError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"mlupdated: error: {exc}", file=sys.stderr)
        # An error that stops a command before it could do its job is a usage or
        # configuration failure; per-input failures are reported by the command itself
        # and give exit 1.
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
