"""What produces the spans and fields we need that OpenTelemetry contrib does not."""
