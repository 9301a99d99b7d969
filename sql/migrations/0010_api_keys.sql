-- API keys: sent as `Authorization: Bearer <key>`, stored only as SHA-256 hashes (the keys are
-- 256 random bits, so a fast hash is as good as a slow one), each with its scopes:
-- ingest (write events), read (queries, dashboard), admin (rules, channels, silences, services,
-- incidents, batch tracking, keys).

CREATE TABLE analytics.api_keys (
    id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    prefix       text NOT NULL,  -- the key's first characters, to tell keys apart in lists
    key_sha256   bytea NOT NULL UNIQUE,
    scopes       text[] NOT NULL
                 CHECK (scopes <@ ARRAY['ingest', 'read', 'admin'] AND cardinality(scopes) > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE UNIQUE INDEX api_keys_live_name_idx ON analytics.api_keys (name) WHERE revoked_at IS NULL;
