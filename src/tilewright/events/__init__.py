"""Events and triggers: storage events -> one `convert_blob` job per blob version.

`sources/` parses each payload kind (Event Grid, CloudEvents, S3 notifications) into `parse.BlobEvent`s;
`filters` decides which blobs make jobs and where their pyramids go; `watch` polls stores that send no events.
"""
