"""fusedfs: a replicated distributed file system you mount as a directory.

Parts: `master` (namespace, chunk placement, keeper health), `keeper` (chunk storage),
`client` (the library the CLI and the mount share) and `mount` (the FUSE daemon). They talk only
through the gRPC protocol in protos/ (generated into `fusedfs.rpc`).
"""

__version__ = "0.1.0"
