"""The mount: a pyfuse3 (trio) daemon that makes the cluster an ordinary directory."""
