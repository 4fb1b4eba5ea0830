"""Workers: the profile processor and the process runner."""
