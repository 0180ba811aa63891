"""``@db.model``: a class with type hints becomes a :class:`ModelSpec`.

The spec holds the columns (declared fields plus the managed ones), the
options and indexes, and the pydantic validators that check records before
any SQL runs.
"""

from __future__ import annotations

import copy
import hashlib
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Union

from pydantic import ConfigDict, Strict, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict

from .errors import ModelError

__all__ = ["FieldSpec", "IndexSpec", "ModelSpec", "build_model_spec"]

#: Python types a field may declare, and the strictness of their validation.
SUPPORTED_TYPES: dict[type, Any] = {
    str: Annotated[str, Strict()],
    int: Annotated[int, Strict()],
    float: Annotated[float, Strict()],
    bool: Annotated[bool, Strict()],
    Decimal: Decimal,
    datetime: datetime,
    date: date,
    bytes: Annotated[bytes, Strict()],
    dict: dict[str, Any],
    list: list[Any],
}

MODEL_OPTIONS = {"soft_delete", "versioned", "multi_tenant"}
INDEX_KEYS = {"name", "fields", "unique", "type"}
INDEX_TYPES = {"btree"}
MANAGED = ("created_at", "updated_at")
#: model option → the managed column it adds
OPTION_COLUMNS = {"versioned": "version", "soft_delete": "deleted_at", "multi_tenant": "tenant_id"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One column: its name, Python type and rules."""

    name: str
    type: type
    nullable: bool = False
    default: Any = None
    has_default: bool = False
    primary_key: bool = False
    auto: bool = False  # the database assigns it (auto-increment id)
    managed: bool = False  # DataFlow sets it; callers may not

    def make_default(self) -> Any:
        """A fresh default value (mutable defaults are copied per record)."""
        value = self.default
        return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """One index from ``__indexes__``."""

    name: str
    fields: tuple[str, ...]
    unique: bool = False
    type: str = "btree"


@dataclass(slots=True)
class ModelSpec:
    """A model as DataFlow sees it: table, columns, options, indexes, validators."""

    name: str
    table: str
    fields: dict[str, FieldSpec]
    options: dict[str, bool]
    indexes: tuple[IndexSpec, ...]
    cls: type
    settable: tuple[str, ...] = ()  # fields a caller may set
    create_adapter: TypeAdapter[Any] = field(init=False, repr=False)
    update_adapter: TypeAdapter[Any] = field(init=False, repr=False)
    value_adapters: dict[str, TypeAdapter[Any]] = field(init=False, repr=False)
    defaults: tuple[tuple[str, FieldSpec], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.settable = tuple(n for n, f in self.fields.items() if not f.managed and not f.auto)
        self.defaults = tuple(
            (n, self.fields[n]) for n in self.settable if self.fields[n].has_default
        )
        create: dict[str, Any] = {}
        update: dict[str, Any] = {}
        self.value_adapters = {}
        for name in self.settable:
            spec = self.fields[name]
            annotation = _annotation(spec)
            create[name] = NotRequired[annotation] if spec.has_default else annotation
            update[name] = NotRequired[annotation]
        for name, spec in self.fields.items():
            self.value_adapters[name] = TypeAdapter(_annotation(spec))
        self.create_adapter = _typed_dict_adapter(f"{self.name}Create", create)
        self.update_adapter = _typed_dict_adapter(f"{self.name}Update", update)

    @property
    def primary_key(self) -> FieldSpec:
        return self.fields["id"]

    @property
    def versioned(self) -> bool:
        return self.options.get("versioned", False)

    @property
    def soft_delete(self) -> bool:
        return self.options.get("soft_delete", False)

    @property
    def multi_tenant(self) -> bool:
        return self.options.get("multi_tenant", False)

    @property
    def managed_options(self) -> bool:
        """True when any of versioned, soft_delete, multi_tenant is on."""
        return bool(self.options)

    def unique_keys(self) -> list[tuple[str, ...]]:
        """Column sets a caller may name as unique keys (the primary key first).

        For a multi-tenant model a unique index is unique per tenant (the
        database index is ``(tenant_id, …)``); the key a caller names leaves
        ``tenant_id`` out.
        """
        keys = [("id",)]
        for index in self.indexes:
            if index.unique:
                cols = tuple(c for c in index.fields if not (self.multi_tenant and c == "tenant_id"))
                if cols:
                    keys.append(cols)
        return keys


def _annotation(spec: FieldSpec) -> Any:
    base = SUPPORTED_TYPES[spec.type]
    return Union[base, None] if spec.nullable else base


def _typed_dict_adapter(name: str, fields: dict[str, Any]) -> TypeAdapter[Any]:
    td = TypedDict(name, fields)  # type: ignore[operator]
    td.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return TypeAdapter(td)


def default_table_name(class_name: str) -> str:
    """``BlogPost`` → ``blog_posts``; ``Category`` → ``categories``."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()
    if snake.endswith("y") and not snake.endswith(("ay", "ey", "oy", "uy")):
        return snake[:-1] + "ies"
    if snake.endswith(("s", "x", "z", "ch", "sh")):
        return snake + "es"
    return snake + "s"


def check_identifier(name: str, what: str, model: str) -> str:
    """Refuse a table, column or index name that is not a plain identifier."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ModelError(f"model {model}: {what} {name!r} is not a valid identifier "
                         "(letters, digits and underscores, not starting with a digit, at most 63)")
    return name


def _field_type(model: str, name: str, hint: Any) -> tuple[type, bool]:
    origin = typing.get_origin(hint)
    nullable = False
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(hint)) != 2:
            raise ModelError(f"model {model}, field {name!r}: only Optional[X] unions are supported, got {hint!r}")
        hint, nullable = args[0], True
        origin = typing.get_origin(hint)
    if origin in (dict, list):
        hint = origin
    if hint not in SUPPORTED_TYPES:
        allowed = ", ".join(t.__name__ for t in SUPPORTED_TYPES)
        raise ModelError(f"model {model}, field {name!r}: type {hint!r} is not supported (use one of {allowed}, or Optional of one)")
    return hint, nullable


def build_model_spec(cls: type, *, multi_tenant_default: bool = False) -> ModelSpec:
    """Read ``cls``'s annotations, options and indexes into a :class:`ModelSpec`."""
    model = cls.__name__
    options = _options(cls, model)
    if multi_tenant_default:
        options.setdefault("multi_tenant", True)  # an explicit False opts the model out
    options = {k: v for k, v in options.items() if v}
    table = getattr(cls, "__tablename__", None) or default_table_name(model)
    check_identifier(table, "table name", model)
    try:
        hints = typing.get_type_hints(cls, include_extras=False)
    except Exception as exc:
        raise ModelError(f"model {model}: cannot resolve type hints: {exc}") from exc
    hints = {k: v for k, v in hints.items() if not k.startswith("__")}
    fields: dict[str, FieldSpec] = {}
    if "id" in hints:
        id_type, nullable = _field_type(model, "id", hints.pop("id"))
        if id_type not in (int, str) or nullable:
            raise ModelError(f"model {model}: field 'id' must be int or str (the primary key)")
        fields["id"] = FieldSpec("id", id_type, primary_key=True)
    else:
        fields["id"] = FieldSpec("id", int, primary_key=True, auto=True)
    for name, hint in hints.items():
        check_identifier(name, "field name", model)
        if name in MANAGED:
            raise ModelError(f"model {model}: field {name!r} is managed by DataFlow; remove it from the class")
        for option, column in OPTION_COLUMNS.items():
            if name == column and options.get(option):
                raise ModelError(f"model {model}: field {name!r} is managed by DataFlow when {option!r} is on; "
                                 "remove it from the class")
        ftype, nullable = _field_type(model, name, hint)
        has_default = hasattr(cls, name) or nullable
        default = getattr(cls, name, None)
        if has_default and default is not None:
            try:
                default = TypeAdapter(_annotation(FieldSpec(name, ftype, nullable))).validate_python(default)
            except ValidationError as exc:
                raise ModelError(f"model {model}, field {name!r}: default {default!r} does not fit type {ftype.__name__}") from exc
        elif has_default and not nullable:
            raise ModelError(f"model {model}, field {name!r}: default None needs Optional[{ftype.__name__}]")
        fields[name] = FieldSpec(name, ftype, nullable, default, has_default)
    for name in MANAGED:
        fields[name] = FieldSpec(name, datetime, managed=True)
    if options.get("versioned"):
        fields["version"] = FieldSpec("version", int, managed=True)
    if options.get("soft_delete"):
        fields["deleted_at"] = FieldSpec("deleted_at", datetime, nullable=True, managed=True)
    if options.get("multi_tenant"):
        fields["tenant_id"] = FieldSpec("tenant_id", str, managed=True)
    indexes = _indexes(cls, model, fields)
    if options.get("multi_tenant"):
        indexes = _tenant_indexes(table, indexes)
    return ModelSpec(model, table, fields, options, indexes, cls)


def _tenant_indexes(table: str, indexes: tuple[IndexSpec, ...]) -> tuple[IndexSpec, ...]:
    """Unique indexes become unique per tenant; ``tenant_id`` gets an index of its own."""
    out = [
        IndexSpec(i.name, ("tenant_id", *i.fields), True, i.type) if i.unique and "tenant_id" not in i.fields else i
        for i in indexes
    ]
    name = f"ix_{table}_tenant_id"
    if len(name) > 63:
        name = f"ix_{table[:40]}_{hashlib.sha1(table.encode()).hexdigest()[:8]}_tenant_id"
    if not any(i.fields == ("tenant_id",) for i in out):
        out.append(IndexSpec(name, ("tenant_id",)))
    return tuple(out)


def _options(cls: type, model: str) -> dict[str, bool]:
    raw = getattr(cls, "__dataflow__", None) or {}
    if not isinstance(raw, dict):
        raise ModelError(f"model {model}: __dataflow__ must be a dict")
    unknown = set(raw) - MODEL_OPTIONS
    if unknown:
        raise ModelError(f"model {model}: unknown __dataflow__ key(s) {sorted(unknown)}; known: {sorted(MODEL_OPTIONS)}")
    for key, value in raw.items():
        if not isinstance(value, bool):
            raise ModelError(f"model {model}: __dataflow__[{key!r}] must be True or False")
    return dict(raw)


def _indexes(cls: type, model: str, fields: dict[str, FieldSpec]) -> tuple[IndexSpec, ...]:
    raw = getattr(cls, "__indexes__", None) or []
    if not isinstance(raw, (list, tuple)):
        raise ModelError(f"model {model}: __indexes__ must be a list of dicts")
    out: list[IndexSpec] = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise ModelError(f"model {model}: each __indexes__ entry must be a dict")
        unknown = set(entry) - INDEX_KEYS
        if unknown:
            raise ModelError(f"model {model}: unknown __indexes__ key(s) {sorted(unknown)}; known: {sorted(INDEX_KEYS)}")
        name = check_identifier(entry.get("name", ""), "index name", model)
        cols = entry.get("fields")
        if isinstance(cols, str):
            cols = [cols]
        if not cols or not isinstance(cols, (list, tuple)):
            raise ModelError(f"model {model}: index {name!r} needs a non-empty 'fields' list")
        for col in cols:
            if col not in fields:
                raise ModelError(f"model {model}: index {name!r} names unknown field {col!r}")
        kind = entry.get("type", "btree")
        if kind not in INDEX_TYPES:
            raise ModelError(f"model {model}: index {name!r} has unknown type {kind!r}; known: {sorted(INDEX_TYPES)}")
        unique = entry.get("unique", False)
        if not isinstance(unique, bool):
            raise ModelError(f"model {model}: index {name!r}: 'unique' must be True or False")
        out.append(IndexSpec(name, tuple(cols), unique, kind))
    return tuple(out)
