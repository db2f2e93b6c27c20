"""The wallet and merchant web app: static files served by the API (DESIGN §8)."""
