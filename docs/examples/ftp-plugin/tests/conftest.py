"""A real FTP server (pyftpdlib) on 127.0.0.1, on a free port, for the whole session."""

import logging
import threading
import uuid

import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer
from stashflow_ftp import FtpStorage

USER, PASSWORD = "stashflow", "ftp-test-password"


@pytest.fixture(scope="session")
def ftp_server(tmp_path_factory):
    """(host, port, the folder the server serves)."""
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    served = tmp_path_factory.mktemp("ftp-root")
    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(served), perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer})
    server = ThreadedFTPServer(("127.0.0.1", 0), handler)  # port 0: a free one
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)

    thread = threading.Thread(target=serve, name="ftp-server", daemon=True)
    thread.start()
    yield "127.0.0.1", server.address[1], served
    stop.set()
    thread.join(10)
    server.close_all()


@pytest.fixture
def ftp_storage(ftp_server):
    """An FtpStorage on a fresh, empty folder of the server."""
    host, port, _ = ftp_server
    return FtpStorage(host=host, port=port, username=USER, password=PASSWORD,
                      folder=f"results/{uuid.uuid4().hex}")


@pytest.fixture
def ftp_url(ftp_server):
    """`ftp://user:password@host:port`: add a folder."""
    host, port, _ = ftp_server
    return f"ftp://{USER}:{PASSWORD}@{host}:{port}"
