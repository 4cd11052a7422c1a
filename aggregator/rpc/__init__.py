"""The gRPC side: the server and its bearer-token interceptor."""
