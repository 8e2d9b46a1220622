"""The job system: records in a database (`store`), job kinds (`registry`, one module each in `kinds/`),
one runner (`runner`) shared by both executors (`executors`: embedded process pool, Celery)."""
