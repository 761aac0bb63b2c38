"""graphbuild: a Bazel-like build system for multi-architecture container images."""

__version__ = "0.1.0"
