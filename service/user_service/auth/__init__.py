"""Authentication and authorisation: client credentials, JWTs, roles."""
