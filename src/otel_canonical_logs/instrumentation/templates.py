"""A span per Django template render (``{% include %}`` included), and the template line of the
node that raised, whatever the ``debug`` setting of the template engine.

Django annotates exceptions with the failing node only when template debugging is on. We wrap
``Template.render`` (once per render, never per node) and, when a render fails, find the
innermost ``Node.render_annotated`` frame on the traceback: that node, its template and its line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from contextvars import ContextVar
from time import perf_counter_ns
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.trace import SpanKind

from .. import _guard
from .._aggregate import RequestAggregate
from .._frames import TEMPLATE_ATTR
from .._patching import Patches
from .._runtime import runtime
from .._version import __version__
from ..processor import TEMPLATE_ATTRIBUTE, TEMPLATE_NESTED_ATTRIBUTE

_UNKNOWN = "<unknown source>"
_INTERNAL = SpanKind.INTERNAL
_patches = Patches()
# Renders inside a render (includes, inclusion tags): their time is already in the outer one's.
_depth: ContextVar[int] = ContextVar("otel_canonical_logs_template_depth", default=0)


def _template_name(template: Any) -> str:
    name = getattr(template, "name", None)
    if isinstance(name, str) and name:
        return name
    origin = getattr(template, "origin", None)
    return str(getattr(origin, "template_name", None) or getattr(origin, "name", None) or _UNKNOWN)


def culprit(tb: TracebackType | None) -> str | None:
    """``name:line`` of the innermost template node being rendered on traceback ``tb``."""
    from django.template.base import Node

    node = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "render_annotated":
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, Node):
                node = candidate
        tb = tb.tb_next
    if node is None:
        return None
    origin = getattr(node, "origin", None)
    name = getattr(origin, "template_name", None) or getattr(origin, "name", None) or _UNKNOWN
    token = getattr(node, "token", None)
    return f"{name}:{getattr(token, 'lineno', 0) or 0}"


def _annotate(exc: BaseException) -> None:
    if isinstance(getattr(exc, TEMPLATE_ATTR, None), str):
        return  # an inner render (an include) already named its node
    where = culprit(exc.__traceback__)
    if where is not None:
        with contextlib.suppress(AttributeError, TypeError):  # a type without __dict__
            setattr(exc, TEMPLATE_ATTR, where)


def _render_annotated(original: Any, template: Any, context: Any) -> Any:
    """The render; a failure is tagged with the template node that raised it, then re-raised."""
    try:
        return original(template, context)
    except Exception as exc:
        with _guard.guard("templates.annotate"):
            _annotate(exc)
        raise


def _counted_render(
    state: RequestAggregate, original: Any, template: Any, context: Any, name: str, depth: int, ctx: Any
) -> Any:
    """A render in a request whose spans go nowhere: timed and counted, no span (same fields)."""
    try:
        op = state.begin(f"render {name}", "tmpl", ctx, depth)  # what a timeout snapshot names
        start = perf_counter_ns()
    except Exception as exc:
        _guard.report("templates.count", exc)
        return original(template, context)
    error: BaseException | None = None
    try:
        return _render_annotated(original, template, context)
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            elapsed = perf_counter_ns() - start
            state.end(op, error)
            state.add("tmpl", elapsed, timed=not depth)
        except Exception as exc:
            _guard.report("templates.count", exc)


def _render(tracer: trace.Tracer, original: Any, template: Any, context: Any, name: str) -> Any:
    """One render (a template's, or an ``{% extends %}`` parent's): counted on the fast path, else
    a span; inside another render it is nested (its time is already in the outer one's).

    Guarded on both sides of the host's render: if anything of ours fails before it, the render
    runs as it would without us; after it, the render's result or exception is the host's.
    """
    try:
        depth = _depth.get()
        token = _depth.set(depth + 1)
    except Exception as exc:
        _guard.report("templates.render", exc)
        return original(template, context)
    try:
        try:
            ctx = otel_context.get_current()
            state = runtime.counting_state(ctx)
            if state is None:
                attributes: dict[str, Any] = {TEMPLATE_ATTRIBUTE: name}
                if depth:
                    attributes[TEMPLATE_NESTED_ATTRIBUTE] = True
                span = tracer.start_as_current_span(f"render {name}", kind=_INTERNAL, attributes=attributes)
                span.__enter__()
        except Exception as exc:
            _guard.report("templates.render", exc)
            return original(template, context)
        if state is not None:
            return _counted_render(state, original, template, context, name, depth, ctx)
        error: BaseException | None = None
        try:
            return _render_annotated(original, template, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                if error is None:
                    span.__exit__(None, None, None)
                else:
                    span.__exit__(type(error), error, error.__traceback__)
            except Exception as exc:
                _guard.report("templates.render", exc)
    finally:
        _depth.reset(token)


def _make_render(tracer: trace.Tracer, name_of: Any) -> Any:
    def make(original: Any) -> Any:
        def render(self: Any, context: Any) -> Any:
            try:
                name = name_of(self)
            except Exception as exc:
                _guard.report("templates.name", exc)
                return original(self, context)
            return _render(tracer, original, self, context, name)

        return render

    return make


def _extends_name(node: Any) -> str:
    parent = getattr(getattr(node, "parent_name", None), "var", None)
    return parent if isinstance(parent, str) and parent else "<extends>"


def _patch(tracer: trace.Tracer) -> None:
    from django.template.base import Template
    from django.template.loader_tags import ExtendsNode

    _patches.patch(Template, "render", _make_render(tracer, _template_name))
    # ``{% extends %}`` renders its parent with ``Template._render``, past ``Template.render``:
    # counted here, as one more (nested) render, so tmpl_renders is what Django's
    # ``template_rendered`` signal counts.
    _patches.patch(ExtendsNode, "render", _make_render(tracer, _extends_name))


class DjangoTemplateInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """A span per Django template render, named ``render <template>``, with the attribute
    ``django.template.name``; the canonical line counts them as ``tmpl_renders``/``tmpl_time``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("django >= 4.2",)

    def _instrument(self, **kwargs: Any) -> None:
        tracer = trace.get_tracer(__name__, __version__, kwargs.get("tracer_provider"))
        _patch(tracer)

    def _uninstrument(self, **kwargs: Any) -> None:
        _patches.undo()
