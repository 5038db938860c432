"""fusedfs: a replicated distributed file system you mount as a directory.

Parts: `master` (namespace, chunk placement, keeper health), `keeper` (chunk storage),
`client` (the library the CLI and the mount share) and `mount` (the FUSE daemon). They talk only
through the gRPC protocol in protos/ (generated into `fusedfs.rpc`).

Importing the package picks gRPC's transport (below), so it comes before any import of grpc.
"""

import os

# gRPC's newer transport (EventEngine, its default for clients and servers) costs about 0.25 ms
# more per round trip than the one before it on a small machine: an empty call between two
# processes took 0.42-0.46 ms with the older one against 0.67-0.70 ms (2 vCPUs, loopback), and
# nearly every file operation waits for one or more. gRPC reads this when it starts, so it is set
# before any part imports grpc; a GRPC_EXPERIMENTS of the user's own stands. These names are
# those of the grpcio pinned in pyproject.toml (a test checks that gRPC knows them).
GRPC_TRANSPORT = "-event_engine_client,-event_engine_listener,-event_engine_for_all_other_endpoints"
os.environ.setdefault("GRPC_EXPERIMENTS", GRPC_TRANSPORT)

__version__ = "0.1.0"
