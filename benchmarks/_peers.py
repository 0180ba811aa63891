"""SQLAlchemy (Core and ORM) and Django set up the way their users set them up.

Columns are described once as ``(name, kind)`` pairs (kinds: str, key (a unique str), float, int) and
turned into each library's table or model here, with ``id`` and Python-set
``created_at`` / ``updated_at`` added as DataFlow adds them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._engines import Engine
from ._harness import NotInstalled, require

Columns = Sequence[tuple[str, str]]
PRODUCT: Columns = (("name", "str"), ("price", "float"), ("stock", "int"))
ITEM: Columns = (("name", "str"), ("category", "str"), ("price", "float"))
DJANGO_APP = "dataflow_bench"


# -- SQLAlchemy --------------------------------------------------------------

def sqlalchemy_engine(engine: Engine, **kwargs: Any) -> Any:
    require("sqlalchemy")
    from sqlalchemy import create_engine, event

    sa = create_engine(engine.sqlalchemy_url(), **kwargs)
    if engine.name == "sqlite":  # the file is in WAL mode already; this one is per connection
        event.listen(sa, "connect", lambda dbapi, _: dbapi.execute("PRAGMA synchronous=NORMAL"))
    return sa


def sqlalchemy_table(name: str, columns: Columns) -> Any:
    from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table

    types = {"str": lambda: String(255), "key": lambda: String(255), "float": Float, "int": Integer}
    return Table(
        name, MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        *(Column(col, types[kind](), nullable=False, unique=kind == "key") for col, kind in columns),
        Column("created_at", DateTime, nullable=False, default=datetime.now),
        Column("updated_at", DateTime, nullable=False, default=datetime.now, onupdate=datetime.now),
    )


def sqlalchemy_class(table: Any) -> type:
    """A declarative ORM class mapped onto ``table``."""
    from sqlalchemy.orm import DeclarativeBase

    class Base(DeclarativeBase):
        pass

    return type(f"Row_{table.name}", (Base,), {"__table__": table})


# -- Django ------------------------------------------------------------------

def configure_django(engines: Sequence[Engine]) -> None:
    """Configure Django once for this process: one database alias per engine name.

    Does nothing when Django is missing; its contenders then report "not installed".
    """
    if importlib.util.find_spec("django") is None:
        return
    import django
    from django.conf import settings

    mysql = any(e.name == "mysql" for e in engines)
    if mysql and not importlib.util.find_spec("MySQLdb") and importlib.util.find_spec("pymysql"):
        import pymysql

        pymysql.install_as_MySQLdb()  # Django's MySQL backend then runs on PyMySQL
    databases = {"default": {"ENGINE": "django.db.backends.dummy"}}
    databases.update({e.name: e.django_settings() for e in engines})
    settings.configure(DEBUG=False, USE_TZ=False, INSTALLED_APPS=[], DATABASES=databases,
                       DEFAULT_AUTO_FIELD="django.db.models.AutoField")
    django.setup()


_django_models: dict[str, Any] = {}


def django_model(table: str, columns: Columns, *, managed: bool = True) -> Any:
    """A Django model on ``table`` (one per table: Django warns about redefinitions);
    the caller creates the table when ``managed``."""
    require("django")
    if table in _django_models:
        return _django_models[table]
    from django.conf import settings
    from django.db import models

    if not settings.configured:
        raise NotInstalled("django (not configured)")
    fields = {"str": lambda: models.CharField(max_length=255),
              "key": lambda: models.CharField(max_length=255, unique=True), "float": models.FloatField,
              "int": lambda: models.IntegerField(default=0)}
    attrs: dict[str, Any] = {col: fields[kind]() for col, kind in columns}
    attrs["created_at"] = models.DateTimeField(auto_now_add=True)
    attrs["updated_at"] = models.DateTimeField(auto_now=True)
    attrs["Meta"] = type("Meta", (), {"app_label": DJANGO_APP, "db_table": table,
                                      "managed": managed})
    attrs["__module__"] = __name__
    model = _django_models[table] = type(f"M_{table}", (models.Model,), attrs)
    return model


def django_create_table(alias: str, model: Any) -> None:
    from django.db import connections

    with connections[alias].schema_editor() as editor:
        editor.create_model(model)


def django_close(alias: str) -> None:
    """Close this thread's Django connection to ``alias``."""
    from django.db import connections

    connections[alias].close()
