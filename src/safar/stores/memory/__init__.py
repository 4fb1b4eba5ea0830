"""In-memory adapters: fast, not durable. For tests and simulations."""
