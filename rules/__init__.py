"""graphbuild's built-in rules: the public surface. Implementations live in ``_private``.

Each class is registered in the ``graphbuild.rules`` entry-point group, as a third-party rule is.
"""

from ._private.command import CommandRule
from ._private.group import GroupRule
from ._private.image import ImageRule
from ._private.manifest import ManifestRule
from ._private.platform import PlatformRule
from ._private.pull import PullRule

__all__ = ["CommandRule", "GroupRule", "ImageRule", "ManifestRule", "PlatformRule", "PullRule"]
