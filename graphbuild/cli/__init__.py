"""The `graphbuild` command line: argument parsing and dispatch; one module per subcommand.

Subcommand modules are imported only when used, so `graphbuild --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from .. import __version__
from ..errors import GraphbuildError

COMMANDS = {
    "run": "build targets (and with --push publish them)",
    "query": "list targets and their dependency closures",
    "graph": "print the graph for Graphviz or tools",
    "affected": "targets whose inputs changed since a git commit",
    "inspect": "show a manifest list or image like `docker manifest inspect`",
    "export": "write an image or index to an oci or docker archive",
    "cache": "local cache: stats, clean, gc, verify [--repair]",
    "builders": "buildx builders the platforms need: list, --create",
    "sbom": "print the SPDX SBOM attached to a built image",
    "verify": "rebuild a target in a scratch cache and compare digests",
    "load": "load a built image into a local Docker or Podman",
}

SET_HELP = ("give a value of WORKSPACE.yaml vars (or a built-in git value) for {NAME} in tags, "
            "build_args, labels, annotations; repeatable; beats GRAPHBUILD_VAR_NAME")


class Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one readable message (its default is also 2)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        # prog is "graphbuild" or "graphbuild run": the command to ask for help is prog itself
        self.exit(2, f"graphbuild: error: {message}\n  hint: {self.prog} --help\n")


def build_parser() -> Parser:
    parser = Parser(prog="graphbuild", description="Build multi-architecture container images "
                    "from BUILD.yaml files, in parallel, cached and explained.")
    parser.add_argument("-C", "--workspace", metavar="DIR", help="the workspace root")
    parser.add_argument("--version", action="version", version=f"graphbuild {__version__}")
    parser.add_argument("--set", action="append", dest="sets_top", metavar="NAME=VALUE",
                        help=SET_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-C", "--workspace", metavar="DIR", default=argparse.SUPPRESS,
                       help="the workspace root")
        p.add_argument("--set", action="append", dest="sets", metavar="NAME=VALUE",
                       default=argparse.SUPPRESS, help=SET_HELP)
        module = importlib.import_module(f".{name}_cmd", __name__)
        module.add_arguments(p)
    return parser


def _terminate(signum, frame):  # SIGTERM behaves like Ctrl-C: stop actions, exit 130
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with it ignored
    module = importlib.import_module(f".{args.command}_cmd", __name__)
    try:
        return module.main(args)
    except GraphbuildError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("graphbuild: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        from ..errors import is_no_space

        if not is_no_space(exc):
            raise
        print(f"graphbuild: no space left on device while writing {exc.filename or 'a file'}",
              file=sys.stderr)
        return 1
    finally:
        import gc

        from ..engine import run_lock

        run_lock.release_all()  # what the command held of the cache directory's lock
        gc.unfreeze()  # what hashing.gc_paused froze is collectable again for whoever runs next


def entry() -> None:
    code = main()
    import gc

    gc.freeze()  # the process ends here: its final collection need not walk every object
    sys.exit(code)
