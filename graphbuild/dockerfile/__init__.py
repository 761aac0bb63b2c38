"""A pure-Python Dockerfile front end with BuildKit's grammar and semantics.

``parse`` gives BuildKit's AST view of the text, ``parse_stages`` the typed, expanded stages,
``ShellLex`` the word expansion both use.
"""

from graphbuild.dockerfile.instructions import (
    Arg,
    Cmd,
    Command,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    SourceContent,
    Stage,
    StopSignal,
    User,
    Volume,
    Workdir,
    parse_stages,
    reachable_stages,
    target_stage,
)
from graphbuild.dockerfile.parser import (
    Dockerfile,
    DockerfileSyntaxError,
    Heredoc,
    Instruction,
    parse,
)
from graphbuild.dockerfile.shell import ShellLex

__all__ = [
    "Arg", "Cmd", "Command", "Copy", "Dockerfile", "DockerfileSyntaxError", "Entrypoint", "Env",
    "Expose", "Healthcheck", "Heredoc", "Instruction", "Label", "Maintainer", "Onbuild", "Run",
    "Shell", "ShellLex", "SourceContent", "Stage", "StopSignal", "User", "Volume", "Workdir",
    "parse", "parse_stages", "reachable_stages", "target_stage",
]
