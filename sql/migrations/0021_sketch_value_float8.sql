-- sketch_value in float8 arithmetic. In 0003 and 0014, `(key - 50000) * 0.018000486023620893`
-- multiplied an integer by a numeric literal, so exp() ran on numeric: 5.4 us a call, where the
-- float8 exp takes 0.3 (100,000 calls: 543 -> 33 ms). A time series with a percentile calls it
-- once a bucket: 1,441 buckets spent 8 of their 19 ms here. The values agree within 6e-14
-- (relative; 7.5e-15 over keys 45,000..55,000), far inside the sketch's 1%; sketch_key was
-- float8 arithmetic already (float8 / numeric resolves to float8), and stays as it is.
-- The outermost keys, +-89,432 (values past 1.7877e308, which ingest accepts up to the largest
-- float8), have a representative beyond the largest float8: both the numeric version and a
-- plain float8 exp failed there ("value out of range"); they answer the largest float8, within
-- 0.6% of the bucket and clamped to [min, max] by every query anyway.
CREATE OR REPLACE FUNCTION analytics.sketch_value(key integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN key > 89431 THEN 1.7976931348623157e308::float8
        WHEN key < -89431 THEN -1.7976931348623157e308::float8
        WHEN key > 0 THEN 0.991::float8 * exp((key - 50000)::float8 * 0.018000486023620893::float8)
        WHEN key < 0 THEN -0.991::float8 * exp((-key - 50000)::float8 * 0.018000486023620893::float8)
        WHEN key = 0 THEN 0::float8
    END
$$;
