"""The app layer: requests, responses, routes and endpoints. No door, no hub.

    from m2stack.app import App, Endpoint, HTTPError, Response, Router
"""

from m2stack.app.application import App
from m2stack.app.request import Request
from m2stack.app.response import DeadlineExceeded, HTTPError, Response, StreamingResponse, error_response, json_response
from m2stack.app.routing import Endpoint, Route, Router

__all__ = ["App", "DeadlineExceeded", "Endpoint", "HTTPError", "Request", "Response", "Route", "Router",
           "StreamingResponse",
           "error_response", "json_response"]
