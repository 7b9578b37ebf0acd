"""Messages: the contract of what travels on the queues, its ids, counts and changes."""
