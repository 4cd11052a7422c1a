"""The stored cluster document: store, `$set` patch, and the governed update."""
