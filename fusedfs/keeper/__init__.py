"""The keeper: stores chunks on local disk, serves and forwards them, heartbeats to the master."""
