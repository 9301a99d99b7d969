-- GET /metrics counts the failed delivery attempts of the last day on every scrape (at most one
-- read per 5 s): an index on just those rows.
CREATE INDEX notification_attempts_failed_idx ON analytics.notification_attempts (at)
    WHERE NOT ok;
