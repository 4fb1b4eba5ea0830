"""Value types shared by every layer. Plain data, no I/O."""
