"""Database helpers the apps share (PostgreSQL only, like the rest of the project)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Model

# Rows per UPDATE: PostgreSQL takes at most 65,535 parameters a statement.
UPDATE_CHUNK = 2000


def update_rows(rows: Sequence[Model], names: Sequence[str], *, chunk: int = UPDATE_CHUNK) -> None:
    """`UPDATE … FROM (VALUES …)`: each row's own values of the fields `names`, in one statement
    per `chunk` rows. QuerySet.bulk_update builds a CASE per field and row: ten times the CPU at a
    batch of 20, seconds at an event's 10,000 participations (bench/execution.py). Values are
    prepared by the model's own fields, as Model.save would; rows are matched by primary key."""
    if not rows:
        return
    meta = type(rows[0])._meta
    quote = connection.ops.quote_name
    fields = [meta.pk, *(meta.get_field(name) for name in names)]
    columns = [quote(field.column) for field in fields]
    row = "(" + ", ".join(f"%s::{field.cast_db_type(connection)}" for field in fields) + ")"
    assignments = ", ".join(f"{column} = v.{column}" for column in columns[1:])
    for offset in range(0, len(rows), chunk):
        part = rows[offset : offset + chunk]
        params = [
            field.get_db_prep_save(getattr(obj, field.attname), connection)
            for obj in part
            for field in fields
        ]
        with connection.cursor() as cursor:
            # Table and column names come from the model; every value is a parameter.
            cursor.execute(
                f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "  # noqa: S608  # nosec B608
                f"FROM (VALUES {', '.join([row] * len(part))}) AS v ({', '.join(columns)}) "
                f"WHERE t.{columns[0]} = v.{columns[0]}",
                params,
            )
