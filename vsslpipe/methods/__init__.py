"""Self-supervised methods: how backbones, heads and losses combine (chosen by name)."""
