"""Events and triggers: Event Grid, CloudEvents and S3 payloads -> one `convert_blob` job per blob version."""
