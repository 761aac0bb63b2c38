"""The OCI distribution side of graphbuild.

- ``reference``: image references (``host[:port]/repo[:tag][@digest]``, Docker Hub defaults).
- ``credentials``: Docker's ``config.json``, credential helpers and stores.
- ``client``: ``RegistryClient``, one registry's API with auth, retries and verified transfers.
- ``transport``: HTTP under the client: a lean keep-alive pool for plain HTTP, httpx for HTTPS.
- ``transfer``: ``pull_image`` (one platform into a store) and ``publish`` (the transactional push).

Nothing is imported here, so ``reference`` and ``credentials`` stay usable without the
HTTP stack (and httpx is imported only for HTTPS).
"""
