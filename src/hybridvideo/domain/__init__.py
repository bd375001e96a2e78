"""Pure domain core: value types and rules, standard library only."""
