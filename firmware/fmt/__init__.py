"""Payload formats: CBOR (RFC 8949) and SenML (RFC 8428)."""
