"""What the tests send from outside the project: the OTLP JSON sender (run in a virtualenv of
its own) and the protobuf exposition messages of a scrape target (exposition.proto)."""
