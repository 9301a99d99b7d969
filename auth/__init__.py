"""API keys: the key store (keys.py, also behind `python -m jobs keys`), the in-memory table
every request is checked against (table.py) and the keys endpoints (routes.py). The check on
each request (the Authorization header, 401 and 403) is service/front.py with service/auth.py;
the scope each route needs is declared with the route."""
