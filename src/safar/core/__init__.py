"""Pure logic: no I/O, no clock, no randomness. State + input + now -> new state + commands."""
