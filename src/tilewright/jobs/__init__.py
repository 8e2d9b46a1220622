"""The job system: records in a database (`store`), task kinds (`tasks`), one runner (`runner`)
shared by both executors (`executors`: embedded process pool, Celery)."""
