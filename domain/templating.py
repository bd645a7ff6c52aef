"""One sandboxed Jinja2 environment for every store-written template and condition.

Jinja's sandbox is a well-kept, audited way to let config authors write expressions
(`'cancel' in intents and order.sale`) without giving them Python: no attribute access to
internals, no imports, no I/O."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _where(items: Any, key: str, value: Any = True) -> list[Any]:
    """`orders | where('payment_status', 'failed')`: the items whose key equals value."""
    out = []
    for item in items or []:
        got = item.get(key) if isinstance(item, dict) else getattr(item, key, None)
        if (got == value) if value is not True else bool(got):
            out.append(item)
    return out


def _path(value: Any) -> str:
    """Quote a value for use as one URL path segment (slashes too)."""
    return quote(str(value), safe="")


ENV = ImmutableSandboxedEnvironment(undefined=Undefined, autoescape=False)
ENV.filters["where"] = _where
ENV.filters["path"] = _path
STRICT_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
STRICT_ENV.filters.update(ENV.filters)


def _flat_globals(template: Any) -> Any:
    """Jinja gives each template its globals as a ChainMap over the environment's, and copies
    them into a new dict on every render or evaluation; iterating a ChainMap is slow (most of
    the cost of evaluating `'human' in intents`, and the rules evaluate a dozen conditions a
    message). The environment's globals never change after import, so each template keeps a
    plain dict of them instead: the same names and values, copied fast."""
    template.globals = dict(template.globals)
    return template


@lru_cache(maxsize=1024)
def _template(source: str) -> Any:
    return _flat_globals(ENV.from_string(source))


@lru_cache(maxsize=1024)
def _expression(source: str) -> Any:
    expression = ENV.compile_expression(source)
    inner = getattr(expression, "_template", None)  # Jinja's TemplateExpression keeps its template
    if inner is not None:
        _flat_globals(inner)
    return expression


def render(template: str, **context: Any) -> str:
    return str(_template(template).render(**context))


def evaluate(expression: str, **context: Any) -> Any:
    return _expression(expression)(**context)


def expression_context(values: dict[str, Any]) -> dict[str, Any]:
    """A context for `evaluate_in`: the values with the environment's globals under them, as
    `evaluate` would see them. Build it once, change its entries between evaluations."""
    return {**ENV.globals, **values}


_LOCAL = threading.local()  # each thread's Jinja context object per expression (evaluate_in)
_CONTEXTS_KEPT = 1024


def evaluate_in(expression: str, context: dict[str, Any]) -> Any:
    """`evaluate` against a context made by `expression_context`, without copying it: Jinja
    copies the variables into a new dict on every call (three copies with the keyword arguments),
    which for the rules' dozen conditions a message, each over all the facts, was most of their
    cost. Evaluating only reads the context (the expression's result goes to the template's own
    variables), so one context serves a whole pass of the rules. The Jinja context object an
    expression runs in is made once per thread and reset for each evaluation (its variables
    emptied, the context swapped in): building it was a third of what was left (about 19
    evaluations a turn, 2.5 -> 1.6 us each); a fresh set of variables is all a new one gave."""
    compiled = _expression(expression)
    template = getattr(compiled, "_template", None)
    if template is None:  # not Jinja's TemplateExpression as we know it: the ordinary way
        return compiled(**context)
    contexts = getattr(_LOCAL, "contexts", None)
    if contexts is None or len(contexts) > _CONTEXTS_KEPT:
        contexts = _LOCAL.contexts = {}
    ctx = contexts.get(template)
    if ctx is None:
        ctx = contexts[template] = template.new_context(context, shared=True)
    else:
        ctx.parent = context
        ctx.vars = {}
        ctx.exported_vars = set()
    for _ in template.root_render_func(ctx):
        pass
    result = ctx.vars["result"]
    return None if isinstance(result, Undefined) else result
