"""`result_storage_key` templates: only `parameters[...]`, `flow_run.*` and `task_run.*`.

A template is checked when the task is defined (unknown fields, parameters the
function does not have) and compiled once; formatting never evaluates
anything but those fields, and the formatted key is validated like any key.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable
from typing import Any

from ..exceptions import TemplateError
from ..keys import validate_key

FLOW_RUN_FIELDS = ("id", "name", "flow_name", "run_count")
TASK_RUN_FIELDS = ("id", "name", "task_name", "run_count")

_Getter = Callable[[dict, Any, Any], Any]


def _error(template: str, field: str, why: str) -> TemplateError:
    return TemplateError(
        f"result_storage_key {template!r}: {{{field}}} {why}. Allowed fields: "
        f"{{parameters[NAME]}}, {{flow_run.{'|'.join(FLOW_RUN_FIELDS)}}}, "
        f"{{task_run.{'|'.join(TASK_RUN_FIELDS)}}}"
    )


def _getter(template: str, field: str, parameter_names: frozenset[str] | None) -> _Getter:
    if field.startswith("parameters[") and field.endswith("]"):
        name = field[len("parameters["):-1]
        if not name or any(c in name for c in "[].{}"):
            raise _error(template, field, "is not a single parameter lookup")
        if parameter_names is not None and name not in parameter_names:
            raise _error(template, field, f"names no parameter of the task "
                                          f"(parameters: {', '.join(sorted(parameter_names))})")

        def parameter(parameters: dict, _flow_run: Any, _task_run: Any) -> Any:
            try:
                return parameters[name]
            except KeyError:
                raise _error(template, field, "names a parameter this call does not have") from None
        return parameter
    prefix, _, attr = field.partition(".")
    if prefix == "flow_run" and attr in FLOW_RUN_FIELDS:
        def from_flow_run(_p: dict, flow_run: Any, _t: Any) -> Any:
            if flow_run is None:
                raise _error(template, field, "needs a flow run; the task ran outside a flow")
            return getattr(flow_run, attr)
        return from_flow_run
    if prefix == "task_run" and attr in TASK_RUN_FIELDS:
        return lambda _p, _f, task_run: getattr(task_run, attr)
    raise _error(template, field, "is not an allowed field")


class KeyTemplate:
    """A compiled `result_storage_key`."""

    __slots__ = ("_parts", "template")

    def __init__(self, template: str, parameter_names: Iterable[str] | None = None):
        if not isinstance(template, str) or not template:
            raise TemplateError(f"result_storage_key must be a non-empty str, not {template!r}")
        names = None if parameter_names is None else frozenset(parameter_names)
        self.template = template
        parts: list[tuple[str, _Getter | None, str | None, str]] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise TemplateError(f"result_storage_key {template!r} is not a valid template: {exc}") from None
        for literal, field, spec, conversion in parsed:
            if field is None:
                parts.append((literal, None, None, ""))
                continue
            if not field:
                raise _error(template, field, "is a positional field")
            if spec and ("{" in spec or "}" in spec):
                raise _error(template, field, "has a nested field in its format spec")
            parts.append((literal, _getter(template, field, names), conversion, spec or ""))
        self._parts = tuple(parts)

    def format(self, parameters: dict[str, Any], flow_run: Any, task_run: Any) -> str:
        """The key for one run, validated (InvalidResultKey if it would leave the root)."""
        out = []
        for literal, getter, conversion, spec in self._parts:
            out.append(literal)
            if getter is None:
                continue
            value = getter(parameters, flow_run, task_run)
            if conversion == "r":
                value = repr(value)
            elif conversion == "a":
                value = ascii(value)
            elif conversion == "s":
                value = str(value)
            out.append(format(value, spec))
        return validate_key("".join(out))

    def __repr__(self) -> str:
        return f"KeyTemplate({self.template!r})"
