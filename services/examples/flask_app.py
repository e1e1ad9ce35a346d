"""A plain Flask app, served behind Mongrel2 by the handler image with no change to it.

    APP=examples.flask_app:app python3 -m m2stack.run_gevent     (or run_eventlet)
    make up VARIANT=example-flask   the whole stack: mongrel2 + a handler running this app

Nothing here knows about Mongrel2: m2stack.wsgi.WSGIHandlerApp turns each Mongrel2
request into a WSGI environ and the WSGI response back into a Mongrel2 reply.
"""

from flask import Flask, abort, jsonify, make_response, request

app = Flask(__name__)

ITEMS = {1: {"id": 1, "name": "mongrel"}, 2: {"id": 2, "name": "gunicorn"}}


@app.get("/")
def index():
    return "Hello from Flask behind Mongrel2!\n"


@app.get("/items/<int:item_id>")
def item(item_id: int):
    if item_id not in ITEMS:
        abort(404)
    return jsonify(ITEMS[item_id])


@app.post("/items")
def create_item():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return jsonify(error="expected a JSON object with a string 'name'"), 400
    return jsonify(id=len(ITEMS) + 1, name=data["name"]), 201


@app.get("/whoami")
def whoami():
    """What the WSGI environ looks like from inside the app."""
    return jsonify(path=request.path, args=request.args.to_dict(flat=False),
                   cookies=request.cookies, hub=request.environ.get("m2stack.hub"),
                   user_agent=request.headers.get("User-Agent"))


@app.get("/login")
def login():
    response = make_response(jsonify(logged_in=True))
    response.set_cookie("session", "abc123", httponly=True, samesite="Lax")
    response.set_cookie("theme", "dark")
    return response
