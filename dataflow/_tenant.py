"""The tenant a workflow runs for: bound per context, resolved once per execute.

``db.tenant_context.switch("acme")`` binds a tenant in a :class:`contextvars.ContextVar`,
so a tenant bound in one thread or asyncio task is never seen by another thread
(each starts with an empty context) and is unbound again when the ``with`` block
ends. The runtime reads it once per ``execute`` and hands it to the nodes in their
``RunContext``; it is never stored on a connection.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Iterator
from typing import Any

from .errors import TenantRequiredError

__all__ = ["MAX_TENANT_LENGTH", "TenantContext", "check_tenant", "resolve_tenant"]

#: the longest tenant id accepted (it is stored in an indexed text column on every backend)
MAX_TENANT_LENGTH = 255

_counter = itertools.count()


def check_tenant(value: Any) -> str:
    """``value`` if it is a usable tenant id, else :class:`TenantRequiredError`."""
    if not isinstance(value, str) or not value:
        raise TenantRequiredError(f"a tenant id must be a non-empty string, got {value!r}")
    if len(value) > MAX_TENANT_LENGTH:
        raise TenantRequiredError(f"a tenant id may have at most {MAX_TENANT_LENGTH} characters, got {len(value)}")
    return value


class TenantContext:
    """The tenant bound in the current thread or task, for one DataFlow instance."""

    __slots__ = ("_var",)

    def __init__(self) -> None:
        self._var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            f"dataflow_tenant_{next(_counter)}", default=None
        )

    @contextlib.contextmanager
    def switch(self, tenant_id: str) -> Iterator[str]:
        """Bind ``tenant_id`` for the ``with`` block (nested blocks restore the outer tenant)."""
        token = self._var.set(check_tenant(tenant_id))
        try:
            yield tenant_id
        finally:
            self._var.reset(token)

    @property
    def current(self) -> str | None:
        """The tenant bound here, or None."""
        return self._var.get()

    def __repr__(self) -> str:
        return f"<TenantContext current={self.current!r}>"


def resolve_tenant(context: TenantContext, explicit: str | None, needed: bool, what: str) -> str | None:
    """The tenant for one execute: ``explicit`` (``execute(tenant_id=…)``) wins over the bound one.

    ``needed`` (the workflow touches a multi-tenant model) and no tenant → :class:`TenantRequiredError`.
    """
    if explicit is not None:
        return check_tenant(explicit)
    tenant = context.current
    if tenant is None and needed:
        raise TenantRequiredError(
            f"{what} uses a multi-tenant model but no tenant is bound: use "
            "'with db.tenant_context.switch(tenant_id):' or execute(..., tenant_id=...)"
        )
    return tenant
