"""StreamingResponse through the app, the hosted WSGI bridge and the WSGI door (no I/O)."""

from __future__ import annotations

from m2stack.app import App, Endpoint, Request, Router, StreamingResponse
from m2stack.app.hosted_wsgi import HostedWSGIApp
from m2stack.doors.wsgi import WSGIAdapter
from m2stack.hubs import blocking_hub


def request(method: str = "GET", path: str = "/s") -> Request:
    return Request.from_raw(method, path.encode(), b"", {"host": "x"}, b"")


def tracked():
    state = {"closed": False, "produced": 0}

    def produce():
        try:
            for i in range(3):
                state["produced"] += 1
                yield b"%d" % i
        finally:
            state["closed"] = True

    return state, produce()


def streaming_app(chunks) -> App:
    routes = Router()

    @routes.route("/s")
    class S(Endpoint):
        def get(self):
            return StreamingResponse(chunks)

    return App(routes)


def test_a_streamed_response_has_no_content_length_and_keeps_its_iterable():
    state, chunks = tracked()
    response = streaming_app(chunks).handle(request())
    names = [n for n, _ in response.headers]
    assert "Content-Length" not in names and "X-Request-Id" in names
    assert b"".join(response.stream) == b"012" and state["closed"]


def test_head_closes_the_producer_unread():
    state, chunks = tracked()
    response = streaming_app(chunks).handle(request("HEAD"))
    assert response.stream is None and response.body == b""
    assert state["produced"] == 0


def test_hosted_wsgi_streams_a_generator_and_collects_a_list():
    state, chunks = tracked()

    def generator_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield from chunks

    response = HostedWSGIApp(generator_app).handle(request())
    assert response.stream is not None and "Content-Length" not in dict(response.headers)
    assert b"".join(response.stream) == b"012" and state["closed"]

    def list_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"a", b"b"]

    response = HostedWSGIApp(list_app).handle(request())
    assert response.stream is None and response.body == b"ab"
    assert dict(response.headers)["Content-Length"] == "2"


def test_hosted_wsgi_error_before_the_first_chunk_is_a_500():
    def failing(environ, start_response):
        start_response("200 OK", [])
        raise RuntimeError("boom")
        yield b""  # a generator

    response = HostedWSGIApp(failing).handle(request())
    assert response.status == 500 and response.stream is None


def test_the_wsgi_door_hands_the_iterable_to_the_server():
    state, chunks = tracked()
    adapter = WSGIAdapter(streaming_app(chunks), blocking_hub(), max_body=100)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/s", "QUERY_STRING": "",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.input": None, "wsgi.url_scheme": "http"}
    seen = []
    body = adapter(environ, lambda status, headers: seen.append(status))
    iterator = iter(body)
    assert next(iterator) == b"0" and seen == ["200 OK"]
    body.close()  # the server stops early: the producer is closed
    assert state["closed"] and state["produced"] == 1


# -- mongrel2's upload messages (doors/mongrel2/uploads.py) ------------------------------

def upload_message(headers: dict, body: bytes = b""):
    from m2stack.protocol.mongrel2 import Mongrel2Request
    return Mongrel2Request(b"s", b"1", "/upload", {"METHOD": "POST", **headers}, body)


def uploads_in(directory, **settings):
    from m2stack.doors.mongrel2.uploads import Uploads
    from m2stack.settings import HandlerSettings
    return Uploads(HandlerSettings(upload_dir=str(directory), **settings))


def test_the_done_message_becomes_the_body_and_the_file_goes(tmp_path):
    path = tmp_path / "upload.AbC123"
    path.write_bytes(b"x" * 30_000)
    uploads = uploads_in(tmp_path)
    start = {"content-length": "30000", "x-mongrel2-upload-start": str(path)}
    assert uploads.take(upload_message(start)) is None  # the start notice: nothing to do
    taken, body = uploads.take(upload_message({**start, "x-mongrel2-upload-done": str(path)}))
    assert not path.exists()  # unlinked as soon as it is open: gone whatever happens next
    assert body.read(40_000) == b"x" * 30_000 and body.read(1) == b""
    body.close()
    assert "x-mongrel2-upload-done" not in taken.headers


def test_a_chunked_upload_has_no_content_length_and_is_taken_at_its_size(tmp_path):
    # mongrel2 1.12 writes every chunked body to temp_store, whatever its size.
    path = tmp_path / "upload.Chunk1"
    path.write_bytes(b"y" * 5000)
    uploads = uploads_in(tmp_path)
    start = {"transfer-encoding": "chunked", "x-mongrel2-upload-start": str(path)}
    assert uploads.take(upload_message(start)) is None
    _, body = uploads.take(upload_message({**start, "x-mongrel2-upload-done": str(path)}))
    assert body.size == 5000 and body.read(10_000) == b"y" * 5000
    body.close()


def test_a_chunked_upload_over_the_limit_is_413_once_written(tmp_path):
    import pytest

    from m2stack.app import HTTPError
    path = tmp_path / "upload.Chunk2"
    path.write_bytes(b"y" * 5000)
    uploads = uploads_in(tmp_path, max_body=4096)
    start = {"transfer-encoding": "chunked", "x-mongrel2-upload-start": str(path)}
    assert uploads.take(upload_message(start)) is None  # no length to judge by yet
    with pytest.raises(HTTPError) as caught:
        uploads.take(upload_message({**start, "x-mongrel2-upload-done": str(path)}))
    assert caught.value.status == 413 and caught.value.details == {"limit": 4096, "length": 5000}
    assert not path.exists()


def test_a_done_message_whose_file_is_elsewhere_is_503(tmp_path):
    # A genuine message (only mongrel2 sends an empty body with a positive length) whose
    # file is not here: mongrel2 wrote it on another host's volume.
    import pytest

    from m2stack.app import HTTPError
    path = tmp_path / "upload.Gone12"
    uploads = uploads_in(tmp_path)
    with pytest.raises(HTTPError) as caught:
        uploads.take(upload_message({"content-length": "5", "x-mongrel2-upload-start": str(path),
                                     "x-mongrel2-upload-done": str(path)}))
    assert caught.value.status == 503 and "HANDLER_UPLOAD_DIR" in caught.value.message


def test_spoofed_or_odd_upload_messages_are_refused(tmp_path):
    import pytest

    from m2stack.app import HTTPError
    path = tmp_path / "upload.AbC123"
    outside = tmp_path.parent / "upload.outside"
    outside.write_bytes(b"no")
    uploads = uploads_in(tmp_path)
    cases = [
        ({"content-length": "3", "x-mongrel2-upload-start": str(path), "x-mongrel2-upload-done": str(path)}, b"abc"),
        ({"content-length": "2", "x-mongrel2-upload-start": str(outside), "x-mongrel2-upload-done": str(outside)}, b""),
        ({"content-length": "2", "x-mongrel2-upload-start": str(path), "x-mongrel2-upload-done": str(outside)}, b""),
        ({"x-mongrel2-upload-done": str(path)}, b""),
        ({"content-length": "0", "x-mongrel2-upload-start": str(path)}, b""),
    ]
    for headers, body in cases:
        with pytest.raises(HTTPError) as caught:
            uploads.take(upload_message(headers, body))
        assert caught.value.status == 400, headers
    assert outside.read_bytes() == b"no"
    outside.unlink()


def test_over_the_maximum_is_413_and_the_file_goes(tmp_path):
    import pytest

    from m2stack.app import HTTPError
    path = tmp_path / "upload.big"
    path.write_bytes(b"x" * 5000)
    uploads = uploads_in(tmp_path, max_body=4096)
    with pytest.raises(HTTPError) as caught:
        uploads.take(upload_message({"content-length": "5000", "x-mongrel2-upload-start": str(path),
                                     "x-mongrel2-upload-done": str(path)}))
    assert caught.value.status == 413 and not path.exists()
