"""The app layer: requests, responses, routes and endpoints, validation. No door, no hub.

    from m2stack.app import App, Endpoint, HTTPError, Response, Router
"""

from m2stack.app.application import App, http_date
from m2stack.app.forwarded import TrustedProxies, client_of
from m2stack.app.hosted_wsgi import HostedWSGIApp
from m2stack.app.request import BodySource, Request, body_too_large
from m2stack.app.response import DeadlineExceeded, HTTPError, Response, StreamingResponse, error_response, json_response
from m2stack.app.routing import Endpoint, Route, Router, Serving
from m2stack.app.validation import decode_json, field_errors, parse_unique
from m2stack.app.websocket import WebSocketConnection, WebSocketEndpoint

__all__ = ["App", "BodySource", "DeadlineExceeded", "Endpoint", "HTTPError", "HostedWSGIApp", "Request",
           "Response", "Route", "Router", "Serving", "StreamingResponse", "TrustedProxies", "WebSocketConnection",
           "WebSocketEndpoint", "body_too_large", "client_of", "decode_json", "error_response", "field_errors",
           "http_date", "json_response", "parse_unique"]
