"""The FastAPI application: routers per role, auth, errors, OpenAPI.

Built in a later issue (DESIGN §7). Nothing imports ``api`` except the CLI (the composition root).
"""
