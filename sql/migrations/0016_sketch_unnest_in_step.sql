-- sketch_add unnests its two sketches in the select list, where PostgreSQL runs the arrays in
-- step (a ProjectSet), instead of unnest(keys, counts) in FROM, which fills a tuple store for
-- every call: the compactor merges a sketch for every tier row it rewrites. Same results.
-- (sketch_rank_keys stays as it is: the same change made the compactor's statement 7x
-- slower, the planner expecting a thousand keys from every call.)

CREATE OR REPLACE FUNCTION analytics.sketch_add(
    keys_a integer[], counts_a bigint[], keys_b integer[], counts_b bigint[]
) RETURNS TABLE (keys integer[], counts bigint[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(key ORDER BY key), array_agg(n ORDER BY key)
    FROM (
        SELECT key, sum(n)::bigint AS n
        FROM (
            SELECT unnest(keys_a) AS key, unnest(counts_a) AS n
            UNION ALL
            SELECT unnest(keys_b), unnest(counts_b)
        ) AS both_sides
        WHERE key IS NOT NULL
        GROUP BY key
    ) AS merged
$$;
