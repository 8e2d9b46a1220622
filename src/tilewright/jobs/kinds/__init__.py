"""The job kinds, one module each (`Params`, `check`, `run`, `TASK`); `jobs.registry` lists them."""
