"""The client library the CLI and the mount share: talk to the master, move chunks, move files."""
