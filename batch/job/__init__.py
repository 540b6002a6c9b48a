"""What each command does, from typed options to a finished job: validate the options, build
the config and the engine, run (``batch.runners``) or report (``batch.reports``)."""
