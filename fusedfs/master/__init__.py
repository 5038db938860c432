"""The master: the namespace, which chunks make up each file, where replicas live, keeper health."""
