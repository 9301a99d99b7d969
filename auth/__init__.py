"""API keys: the key store (auth/keys.py) and the in-memory table every request is checked
against (auth/table.py). The HTTP side (the Authorization header, 401 and 403) is
service/front.py; the scopes each route needs are declared with the route."""
