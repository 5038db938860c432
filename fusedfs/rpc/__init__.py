"""Generated gRPC and protobuf code for protos/fusedfs/rpc/*.proto; never edit by hand.

Regenerate with `python scripts/gen_protos.py`.
"""
