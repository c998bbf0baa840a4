"""Core: settings, modifiers, registry, recipes, sessions, targets."""
