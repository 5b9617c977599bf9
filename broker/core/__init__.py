"""The pure broker core: commands, codec, routing and the state machine."""
