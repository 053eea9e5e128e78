"""The database Django is connected to, as a DATABASE_URL for a subprocess (a Celery worker, a
uvicorn server) that must see the same rows: the test database of this xdist worker in tests,
the throw-away benchmark database in bench/."""

from urllib.parse import quote


def database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    host = db["HOST"] or ""
    if host.startswith("/"):  # a socket directory (the embedded PostgreSQL)
        return f"postgres://{user}{password}@/{quote(f'{host}/{db["NAME"]}', safe='')}"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{user}{password}@{host or '127.0.0.1'}{port}/{db['NAME']}"
