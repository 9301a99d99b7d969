"""`make bench`. HEADERS: what every benchmark request sends (the API key of the run)."""

HEADERS: dict[str, str] = {}
