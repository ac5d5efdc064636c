"""`dbflywheel serve`: the HTTP door to the flywheel (OTLP, feedback API, and the review web app)."""
