"""The base of every Infuse node: what the math raises is reported as this node's, on this node's sockets."""
from __future__ import annotations

import functools
import inspect

from comfy_api.latest import io

from ..core.errors import reported_as


class InfuseNode(io.ComfyNode):
    """An io.ComfyNode whose `execute` runs under `reported_as(<display name>, SOCKETS)`: an InfuseError raised by
    the extractors and mechanisms it calls names this node, and their parameter names become its socket names."""

    SOCKETS: dict[str, str] = {}        # a mechanism's parameter name -> this node's socket id, where they differ

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        execute = cls.__dict__.get("execute")
        # ComfyUI runs nodes through copies of the class (shallow_clone_class, lock_class) that carry the wrapped
        # execute in their dict, and a locked copy refuses attribute writes: wrap each execute once.
        if execute is not None and not getattr(execute.__func__, "_infuse_reported", False):
            cls.execute = classmethod(_reported(execute.__func__))

    @classmethod
    def node_name(cls) -> str:
        return (cls.SCHEMA or cls.define_schema()).display_name


def _reported(execute):
    if inspect.iscoroutinefunction(execute):
        @functools.wraps(execute)
        async def run(cls, *args, **kwargs):
            with reported_as(cls.node_name(), cls.SOCKETS):
                return await execute(cls, *args, **kwargs)
    else:
        @functools.wraps(execute)
        def run(cls, *args, **kwargs):
            with reported_as(cls.node_name(), cls.SOCKETS):
                return execute(cls, *args, **kwargs)
    run._infuse_reported = True
    return run
