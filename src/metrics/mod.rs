//! Prometheus metrics (one registry) and the hardened `/metrics`, `/healthz`, `/readyz` server.
