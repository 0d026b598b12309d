"""The FastAPI application of the cloud service (see :func:`cloud.api.main.create_app`)."""
