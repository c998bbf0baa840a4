"""peft (in progress)."""
