"""HTTP: the application (app.py) and `python -m service`, the route table (routes.py), the
front layer every request passes (front.py, auth.py), the OpenAPI document (openapi.py), the
health endpoints and those over background work (health.py, background.py)."""
