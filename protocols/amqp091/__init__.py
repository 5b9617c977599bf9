"""AMQP 0-9-1 front end: codec (bytes <-> events), processor (channels), io (trio loop)."""
