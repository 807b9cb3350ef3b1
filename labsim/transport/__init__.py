"""Transport state: mail items, queues and mailbox stores (data, no sockets)."""
