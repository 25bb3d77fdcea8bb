"""The OpenAI Admin API: the client, and the reading of what it sends back."""
