"""Work that runs beside the endpoints' request path: asynchronous inference and batch transform."""
