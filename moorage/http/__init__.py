"""A small HTTP/1.1 server on asyncio + httptools, shared by the front door and the instance workers.

Both sit on the hot path: a general-purpose ASGI server's per-request machinery (scope dicts, header
regexes, a task per request) costs more CPU than many models do."""
