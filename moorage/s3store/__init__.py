"""S3 on the front door's port: the embedded store the server runs, and the pass-through to it."""
