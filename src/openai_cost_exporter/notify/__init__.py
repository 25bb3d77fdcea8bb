"""Messages between deciding and sending: the outbox, its delivery, and the notifiers."""
